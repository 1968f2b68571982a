"""The decision log: every decision recorded, hash-chained, written off the decision's path.

`DecisionLog` is the port the decider writes to. `SqlDecisionLog` buffers entries in memory
and a background thread writes them in bulk every `interval` seconds (or sooner when
`max_buffer` entries wait). Before a decision is answered its entries are in the process's
journal (`authz.journal`), so a crash of the process loses none: another process of the same
store writes what the store lacks. A decision that would take the backlog past
`max_backlog` waits for room or is not answered (503): memory stays bounded while the store
is slow or down. Reasons of a denied check are worked out by the writer thread, from the
facts the decision was made on, with its own copy of the same policy version. How entries
are read, verified and pruned is `authz.audit_trail`; the entry and its journal line are
`authz.log_entry` (both re-exported here); an entry as a stored, chained row is
`authz.log_rows`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update

from authz import log_rows
from authz.audit_trail import (
    DecisionView,
    Problem,
    canonical,
    content,
    entry_hash,
    isoformat,
    prune,
    read,
    verify,
)
from authz.bulk import insert_rows
from authz.db import Database
from authz.errors import Unavailable
from authz.journal import Journal, Segment
from authz.log_entry import LogEntry, entry_of_line, journal_line
from authz.log_reasons import DenialReasons
from authz.log_rows import Gathered, Staged, entries_of
from authz.models import DecisionChain, DecisionRecord
from authz.policy import Policy

__all__ = [
    "DecisionLog",
    "DecisionView",
    "LogEntry",
    "LogObserver",
    "Problem",
    "SqlDecisionLog",
    "canonical",
    "content",
    "entry_hash",
    "entry_of_line",
    "isoformat",
    "journal_line",
    "prune",
    "read",
    "verify",
]

log = logging.getLogger("authz.audit")


class LogObserver(Protocol):
    """Told after each write cycle how many entries wait, and of each failed write."""

    def backlog(self, entries: int) -> None: ...

    def write_failed(self) -> None: ...


class DecisionLog(Protocol):
    """Where decisions are recorded."""

    def record(self, entries: Sequence[LogEntry]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def backlog(self) -> int: ...


class SqlDecisionLog:
    """A durable, hash-chained log in the service's own database."""

    def __init__(
        self,
        db: Database,
        policy: Policy,
        journal: Journal | None,
        interval: float = 1.0,
        max_buffer: int | None = None,
        max_backlog: int | None = None,
        max_wait: float = 2.0,
        policy_copies: Path | None = None,
        background: bool = True,
    ) -> None:
        """`journal` is in the store's journal directory (`Settings.journal`; None for a
        store in memory, which a crash loses whole). `max_buffer`
        entries waiting wake the writer, and it writes at most that many in one transaction.
        Past `max_backlog` entries waiting (the writer does not keep up, or the store is
        down), a decision waits up to `max_wait` seconds for room, then is `Unavailable`:
        the backlog and the memory it takes are bounded, and a decision the log cannot take
        is not answered. Every `interval` seconds the writer wakes: the journal keeps what
        waits, so a longer interval costs only how soon the audit API shows an entry, and
        buys bigger, cheaper writes (on SQLite each commit rewrites every index page it
        touched: with wrk at 8 connections on SQLite, the writers spent 76 us of CPU per
        check at 0.2 s and 45 at 1 s, and checks reached 0.60-0.63 of the empty endpoint's
        throughput at 0.2 s against 0.64-0.69 at 1 s, medians of three runs each). For the
        same reason, on SQLite `max_buffer` is 20,000 by default (`max_backlog` 40,000):
        under batch load (wrk, 8 connections) the writers spent 15.0 us of CPU per entry
        writing 5,000 per transaction, 13.6 at 10,000 and 11.9 at 20,000. The cost is that a
        transaction, and the store's one write lock, lasts longer (a few hundred ms at
        20,000), and so does a decision's wait for room when the log is behind (batch p99
        at saturation 200-300 ms against 80-100). On PostgreSQL, which writes a row's index
        entries to its WAL rather than whole pages, 20,000 per transaction spent as much CPU
        per entry as 5,000 (worker and server, 29-31 us either way) and tripled that p99
        (262-330 ms against 111): 5,000 there (`max_backlog` 20,000).

        Every CLAIM_EVERY_S seconds the writer claims the journal segments other processes
        left or handed over, and writes what the store lacks of them. Without `background`
        there is no writer thread: a log writer of its own (`authz.log_writer`) claims and
        writes (`gather`, `write_gathered`). A deny of another
        policy version than `policy`'s gets its reasons from that version's copy in
        `policy_copies` (see `authz.assurance.freeze`), if there."""
        self.db = db
        self.journal = journal
        # The writer thread works out the reasons of denies (with its own oso instance).
        self._reasons = DenialReasons(policy, policy_copies)
        self.interval = interval
        self.max_buffer = max_buffer or (20_000 if db.is_sqlite else 5_000)
        self.max_backlog = max_backlog or self.default_max_backlog(db)
        self.max_wait = max_wait
        self._buffer: list[LogEntry] = []
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified as the writer takes entries
        self._write_lock = threading.Lock()
        # The head of the chain as this log's last write left it, and whether no other log
        # had moved it since the write before (see `_write`).
        self._left: tuple[int, str] | None = None
        self._alone = False
        self._wake = threading.Event()
        self._closed = False
        self.observer: LogObserver | None = None
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        if background:
            self._thread.start()

    @staticmethod
    def default_max_backlog(db: Database) -> int:
        """Twice the entries written per transaction by default."""
        return 40_000 if db.is_sqlite else 20_000

    def record(self, entries: Sequence[LogEntry]) -> None:
        """Journal the entries, then buffer them for the writer.

        :raises Unavailable: when they would still take the backlog past `max_backlog`
            after `max_wait` seconds, or the journal cannot be written (nothing is recorded
            then).
        """
        n = len(entries)
        lines = b"".join(map(journal_line, entries)) if self.journal is not None else b""
        with self._room:
            if self._buffer and len(self._buffer) + n > self.max_backlog:
                self._wake.set()
                if not self._room.wait_for(
                    lambda: not self._buffer or len(self._buffer) + n <= self.max_backlog,
                    self.max_wait,
                ):
                    raise Unavailable(
                        f"the decision log is behind ({len(self._buffer)} entries not yet "
                        "written); try again shortly"
                    )
            if self.journal is not None:
                self.journal.append(lines)
            self._buffer.extend(entries)
            full = len(self._buffer) >= self.max_buffer
        if full:
            self._wake.set()

    def backlog(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> None:
        """Write what is buffered now, `max_buffer` entries per transaction, then delete the
        journal segments that held it. Entries that come meanwhile go to a new segment and
        wait for the next flush: chasing them would make many small writes.

        :raises Unavailable: when the store cannot answer (the entries stay buffered).
        """
        with self._write_lock:
            with self._lock:
                left = len(self._buffer)
                if self.journal is not None:
                    self.journal.seal()
            while left:
                with self._room:
                    chunk = self._buffer[: min(left, self.max_buffer)]
                    del self._buffer[: len(chunk)]
                    self._room.notify_all()
                left -= len(chunk)
                try:
                    self._write(chunk)
                except Exception:
                    with self._lock:  # keep them, in order, for the next try
                        self._buffer[:0] = chunk
                    raise
            if self.journal is not None:
                with self._lock:
                    self.journal.release()

    def close(self) -> None:
        """Stop the writer and write what is left; what cannot be written stays in the
        journal for another process to write."""
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        try:
            self.flush()
        finally:
            if self.journal is not None:
                with self._lock:
                    self.journal.close()

    def replay_orphans(self) -> int:
        """Write the entries of journal segments left by processes that ended or handed
        over, those the store does not hold yet; how many were written. Consecutive
        segments are written together, up to `max_buffer` entries per transaction.

        :raises Unavailable: when the store cannot answer (the segments stay for later).
        """
        written = 0
        if self.journal is None:
            return written
        with self._write_lock:
            gathered = Gathered()
            try:
                for orphan in self.journal.orphans():
                    self.gather(gathered, orphan)
                    if len(gathered.pending) >= self.max_buffer:
                        written += self.write_gathered(gathered)
                        gathered = Gathered()
                if gathered.group:
                    written += self.write_gathered(gathered)
            except Exception:
                gathered.keep()
                raise
        return written

    def gather(self, gathered: Gathered, segment: Segment) -> None:
        """Add a claimed segment, and those of its entries the store lacks, to `gathered`.

        What the store holds of a segment is its first entries, if any: a segment is
        written in order, in transactions, by one process at a time (the one holding it).
        So when its first entry is not stored, no other is looked up; if one turns out
        stored after all, the write fails on its unique id, and the entries are then looked
        up one by one (`write_gathered`).

        :raises Unavailable: when the store cannot answer (the caller keeps what it holds).
        """
        if not gathered.group:
            gathered.since = time.monotonic()
        gathered.group.append((segment, 0))
        entries = entries_of(segment)
        if entries and self._not_stored(entries[:1]):
            gathered.looked_up = False
        else:
            entries = self._not_stored(entries)
        gathered.pending.extend(entries)
        gathered.group[-1] = (segment, len(entries))

    def write_gathered(self, gathered: Gathered) -> int:
        """Write the entries gathered, `max_buffer` per transaction, then delete their
        segments; how many were written.

        :raises Unavailable: when the store cannot answer (the caller keeps what it holds).
        """
        pending = gathered.pending
        try:
            self._write_chunks(pending)
        except Exception:
            if gathered.looked_up:
                raise
            missing = self._not_stored(pending)  # raises again if the store is down
            if len(missing) == len(pending):
                raise
            pending = missing
            self._write_chunks(pending)
        for segment, n in gathered.group:
            segment.delete()
            if n and not segment.handed_over:
                log.warning(
                    "wrote the decision log entries that %s left unwritten", segment.path.name
                )
        gathered.group, gathered.pending = [], []
        return len(pending)

    def _write_chunks(self, entries: list[LogEntry | Staged]) -> None:
        for start in range(0, len(entries), self.max_buffer):
            self._write(entries[start : start + self.max_buffer])

    def _not_stored(self, entries: list[LogEntry | Staged]) -> list[LogEntry | Staged]:
        stored: set[str] = set()
        ids = [e.decision_id for e in entries]
        with self.db.read() as session:
            for start in range(0, len(ids), 500):
                stored.update(
                    session.scalars(
                        select(DecisionRecord.decision_id).where(
                            DecisionRecord.decision_id.in_(ids[start : start + 500])
                        )
                    )
                )
        return [e for e in entries if e.decision_id not in stored]

    def _run(self) -> None:
        next_claim = 0.0
        while not self._closed:
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + CLAIM_EVERY_S
                try:
                    self.replay_orphans()
                except Exception as exc:  # the store is down: try again later
                    log.error("decision journal replay failed: %s", exc)
            self._wake.wait(self.interval)
            self._wake.clear()
            waiting = self.backlog()
            try:
                self.flush()
            except Exception as exc:  # the store is down: keep buffering, try again
                log.error("decision log write failed, %d entries kept: %s", self.backlog(), exc)
                if self.observer is not None:
                    self.observer.write_failed()
            if self.observer is not None:
                # The most that waited this cycle: right after a write it is about 0 however
                # far behind the writer runs, and an operator would see nothing.
                self.observer.backlog(max(waiting, self.backlog()))

    def _write(self, entries: Iterable[LogEntry | Staged]) -> None:
        # On SQLite the transaction holds the store's one write lock (links, syncs and the
        # other workers' logs wait on it), so when this log wrote last its rows are built
        # before it, chained on the head it left. Inside, the head is read under the lock.
        # When another worker's log moved it, the rows are built there, as they are written
        # (a few at a time, not all in memory at once); and after such a write they are
        # built only there, as the head will likely have moved again (under load with
        # several workers it moves between most writes).
        left = self._left
        chained: log_rows.Chained | None = None
        rows: Iterable[tuple[Any, ...]] = ()
        if left is not None and self._alone:
            chained = log_rows.Chained(left[0], left[1], entries, self._reasons)
            rows = list(chained)
        with self.db.write() as session:
            seq, last = session.execute(_HEAD.with_for_update()).one()
            alone = (seq, last) == left
            if chained is None or not alone:
                chained = log_rows.Chained(seq, last, entries, self._reasons)
                rows = chained  # built as insert_rows consumes them
            # Not the ORM's bulk insert: this thread shares the worker's CPU (and GIL) with
            # the requests, and the ORM's per-row bookkeeping was a third of its work.
            insert_rows(session, DecisionRecord.__table__, log_rows.RECORD_COLUMNS, rows)
            session.execute(
                update(DecisionChain)
                .where(DecisionChain.id == 1)
                .values(last_seq=chained.seq, last_hash=chained.prev)
            )
        self._left, self._alone = (chained.seq, chained.prev), alone


# How often the writer looks for journal segments of processes that ended (and at its start).
CLAIM_EVERY_S = 5.0


# The head of the chain: the last entry's seq and hash.
_HEAD = select(DecisionChain.last_seq, DecisionChain.last_hash).where(DecisionChain.id == 1)
