"""The decision log's journal: each entry on disk before its decision is answered.

The decision log writes its entries to the store in bulk, off the decision's path
(`authz.audit`). What a process only holds in memory dies with it, so each entry is first
appended to a journal segment of that process, one `write` per decision or batch: the
kernel keeps what was written whatever becomes of the process (SIGKILL, the OOM killer, a
worker killed on timeout). When the store holds every entry of a segment, the segment is
deleted. A segment whose process ended without that is an orphan: its file lock is free, and
another process of the same store claims it, writes the entries the store lacks and deletes
it.

Segments are not fsynced: they survive a crash of the process, not of the machine (an fsync
per decision would cost milliseconds). One directory per store (`Settings.journal`).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from authz.errors import Unavailable

SUFFIX = ".journal"
# A segment is created under this suffix, locked, then renamed to SUFFIX: no other process
# can see it unlocked and take it for an orphan.
NEW = ".new"
NEW_GRACE_S = 60


@dataclass
class Segment:
    """One journal file, locked by the process that holds `fd`: the one appending to it, or
    one that claimed it from a process that ended."""

    path: Path
    fd: int
    pid: int = field(default_factory=os.getpid)

    def lines(self) -> list[bytes]:
        """Its complete lines; a last line cut short (its process died writing it, before
        that decision was answered) is left out."""
        chunks = []
        while chunk := os.read(self.fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks).split(b"\n")[:-1]

    def delete(self) -> None:
        """Its entries are stored: remove it, and let go of its lock."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def keep(self) -> None:
        """Let go of its lock; another process may claim it later."""
        os.close(self.fd)


class Journal:
    """Appends of one process, in segments; `seal` starts a new one, `release` deletes the
    sealed ones once the store holds their entries. Not thread-safe: the decision log calls
    it under its own lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._current: Segment | None = None
        self._sealed: list[Segment] = []

    def append(self, data: bytes) -> None:
        """Write `data` (whole lines) at the end of the current segment.

        :raises Unavailable: when it cannot be written (nothing of it counts then).
        """
        try:
            segment = self._current
            if segment is None or segment.pid != os.getpid():  # a fork's are its parent's
                segment = self._current = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(segment.fd, view) :]
        except OSError as exc:
            raise Unavailable(
                f"the decision journal in {self.directory} cannot be written: {exc.strerror}"
            ) from exc

    def seal(self) -> None:
        """What is appended from now on goes to a new segment."""
        if self._current is not None:
            self._sealed.append(self._current)
            self._current = None

    def release(self) -> None:
        """The store holds every entry of the sealed segments: delete them (a forked
        process leaves its parent's alone)."""
        for segment in self._sealed:
            if segment.pid == os.getpid():
                segment.delete()
        self._sealed = []

    def close(self) -> None:
        """Let go of the segments without deleting them: what the store does not hold yet
        is replayed by the next process that claims them."""
        for segment in self._held():
            if segment.pid == os.getpid():
                segment.keep()
        self._sealed, self._current = [], None

    def _held(self) -> list[Segment]:
        return [*self._sealed, *([self._current] if self._current else [])]

    def orphans(self) -> Iterator[Segment]:
        """Segments of processes that ended, each locked by this process until the caller
        deletes it (its entries stored) or keeps it (for a later claim)."""
        own = {s.path for s in self._held()}
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            path = self.directory / name
            if path in own or not name.endswith((SUFFIX, NEW)):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # deleted meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                os.close(fd)
                continue
            stat = os.fstat(fd)
            if name.endswith(NEW):
                # Never renamed, so never appended to: its process died creating it (a young
                # one may be about to be locked by its creator).
                if time.time() - stat.st_mtime > NEW_GRACE_S:
                    path.unlink(missing_ok=True)
                os.close(fd)
            elif stat.st_nlink == 0:  # stored and deleted meanwhile
                os.close(fd)
            else:
                yield Segment(path, fd)

    def _open(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        new = self.directory / f"{name}{NEW}"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = new.with_suffix(SUFFIX)
            os.rename(new, path)
        except OSError:
            os.close(fd)
            new.unlink(missing_ok=True)
            raise
        return Segment(path, fd)
