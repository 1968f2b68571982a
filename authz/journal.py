"""The decision log's journal: each entry on disk before its decision is answered.

The decision log writes its entries to the store in bulk, off the decision's path
(`authz.audit`). What a process only holds in memory dies with it, so each entry is first
appended to a journal segment of that process, one `write` per decision or batch: the
kernel keeps what was written whatever becomes of the process (SIGKILL, the OOM killer, a
worker killed on timeout). When the store holds every entry of a segment, the segment is
deleted. A segment whose process ended without that is an orphan: its file lock is free, and
another process of the same store claims it, writes the entries the store lacks and deletes
it.

A process may also hand its sealed segments over whole (`Journal.hand_over`): renamed to
SEALED and unlocked, they are claimed as orphans are, by a log writer of its own
(`authz.log_writer`), and the process only watches them go (`Journal.unstored`).

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
# A segment its process handed over whole for a log writer to store (`Journal.hand_over`).
SEALED = ".sealed"
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
    entries: int = 0  # appended to it by this process

    @property
    def handed_over(self) -> bool:
        """Sealed and let go of by its process, rather than left by a process that ended."""
        return self.path.suffix == SEALED

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
    sealed ones once the store holds their entries, or `hand_over` leaves them to a log
    writer. Not thread-safe: the decision log calls it under its own lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._current: Segment | None = None
        self._sealed: list[Segment] = []
        self._handed: list[Segment] = []  # handed over, maybe not yet stored

    def append(self, data: bytes, entries: int = 1) -> None:
        """Write `data` (whole lines, `entries` of them) at the end of the current segment.

        :raises Unavailable: when it cannot be written (nothing of it counts then).
        """
        try:
            segment = self._current
            if segment is None or segment.pid != os.getpid():  # a fork's are its parent's
                segment = self._current = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(segment.fd, view) :]
            segment.entries += entries
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

    def appended(self) -> int:
        """How many entries the current segment holds."""
        return self._current.entries if self._current is not None else 0

    def hand_over(self) -> None:
        """Leave the sealed segments to a log writer: each is renamed to SEALED, then its
        lock let go of (a forked process leaves its parent's alone).

        :raises Unavailable: when one cannot be renamed (it and those after it stay sealed).
        """
        while self._sealed:
            segment = self._sealed[0]
            if segment.pid == os.getpid():
                target = segment.path.with_suffix(SEALED)
                try:
                    os.rename(segment.path, target)
                except OSError as exc:
                    raise Unavailable(
                        f"the decision journal in {self.directory} cannot be handed over: "
                        f"{exc.strerror}"
                    ) from exc
                segment.path = target
                segment.keep()
                self._handed.append(segment)
            self._sealed.pop(0)

    def unstored(self) -> int:
        """How many entries appended by this process the store may not hold yet: those of
        its segments not handed over, and of handed-over ones a log writer has not deleted."""
        self.handed_over_all_stored()
        return sum(s.entries for s in (*self._handed, *self._held()))

    def handed_over_all_stored(self) -> bool:
        """Whether a log writer has stored (and deleted) every segment handed over."""
        self._handed = [s for s in self._handed if s.path.exists()]
        return not self._handed

    def close(self) -> None:
        """Let go of the segments without deleting them: what the store does not hold yet
        is replayed by the next process that claims them."""
        for segment in self._held():
            if segment.pid == os.getpid():
                segment.keep()
        self._sealed, self._current = [], None

    def _held(self) -> list[Segment]:
        return [*self._sealed, *([self._current] if self._current else [])]

    def orphans(self, held: set[Path] | None = None) -> Iterator[Segment]:
        """Segments of processes that ended or handed them over, each locked by this process
        until the caller deletes it (its entries stored) or keeps it (for a later claim);
        not those at `held` (claimed already)."""
        own = {s.path for s in self._held()} | (held or set())
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            path = self.directory / name
            if path in own or not name.endswith((SUFFIX, SEALED, NEW)):
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
            elif stat.st_nlink == 0 or not _names(path, stat):  # deleted or renamed meanwhile
                os.close(fd)
            else:
                yield Segment(path, fd)

    def _open(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Named in the order a process opens them, so that a writer claims them in order.
        name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
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


def _names(path: Path, stat: os.stat_result) -> bool:
    """Whether `path` still names the file `stat` is of (a segment handed over after it was
    opened by its old name is claimed by its new one)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (stat.st_dev, stat.st_ino)
