"""The decision log of a process whose entries a log writer of its own stores.

A gunicorn worker with AUTHZ_LOG_WRITER=process records each decision's entries in its
journal, as `SqlDecisionLog` does, and no more: every `interval` seconds it hands the
segment written so far over whole (`Journal.hand_over`), and a separate process, the log
writer (`authz.log_writer`, started by the gunicorn master), claims it, stores its entries,
chained, and deletes it. The worker then neither builds rows nor writes them: that work no
longer shares its GIL with the requests, nor the CPU at the same priority.

The backlog is what the worker journaled and the store may not hold yet. Past
`max_backlog` a decision waits up to `max_wait` for the writer to catch up, then is
`Unavailable`: a log writer that is down or behind bounds the journal, and a decision the
log cannot take is not answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from authz.audit import LogObserver
from authz.errors import Unavailable
from authz.journal import Journal
from authz.log_entry import LogEntry
from authz.log_rows import SharedKeys, staged_line

log = logging.getLogger("authz.audit")

# How often the backlog is looked at again while a decision waits for room.
WAITING_POLL_S = 0.02


class HandOverLog:
    """A `DecisionLog` that journals entries and hands the segments to a log writer."""

    def __init__(
        self,
        journal: Journal,
        interval: float = 1.0,
        max_backlog: int = 40_000,
        max_wait: float = 2.0,
    ) -> None:
        """Every `interval` seconds, and whenever the segment being appended to holds a
        quarter of `max_backlog` entries, it is handed over."""
        self.journal = journal
        self.interval = interval
        self.max_backlog = max_backlog
        self.max_wait = max_wait
        self.observer: LogObserver | None = None
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._unstored = 0
        self._waiting = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="decision-handover", daemon=True)
        self._thread.start()

    def record(self, entries: Sequence[LogEntry]) -> None:
        """Journal the entries.

        :raises Unavailable: when they would still take the backlog past `max_backlog`
            after `max_wait` seconds, or the journal cannot be written (nothing is recorded
            then).
        """
        n = len(entries)
        shared = SharedKeys()
        lines = b"".join([staged_line(e, shared) for e in entries])
        with self._room:
            if self._unstored and self._unstored + n > self.max_backlog:
                self._waiting += 1
                self._wake.set()
                try:
                    room = self._room.wait_for(
                        lambda: not self._unstored or self._unstored + n <= self.max_backlog,
                        self.max_wait,
                    )
                finally:
                    self._waiting -= 1
                if not room:
                    raise Unavailable(
                        f"the decision log is behind ({self._unstored} entries not yet "
                        "written); try again shortly"
                    )
            self.journal.append(lines, n)
            self._unstored += n
            full = self.journal.appended() >= self.max_backlog // 4
        if full:
            self._wake.set()

    def backlog(self) -> int:
        """Entries journaled that the store may not hold yet, counted now."""
        with self._room:
            self._look()
            return self._unstored

    def flush(self) -> None:
        """Hand over what is journaled now (the log writer stores it soon after).

        :raises Unavailable: when a segment cannot be handed over (it stays for a later try).
        """
        with self._room:
            self.journal.seal()
            self.journal.hand_over()
            self._look()

    def close(self) -> None:
        """Stop, handing over what is journaled; what cannot be stays in the journal, and a
        log writer claims it once this process has ended."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        try:
            self.flush()
        finally:
            with self._lock:
                self.journal.close()

    def _look(self) -> None:
        """Count again what the store may not hold yet (under the lock); wake who waits."""
        self._unstored = self.journal.unstored()
        self._room.notify_all()

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self._closed:
            self._wake.wait(max(0.0, min(due - time.monotonic(), self._poll())))
            self._wake.clear()
            waiting = self.backlog()
            with self._room:
                # While decisions wait for room, the backlog is looked at often, and what
                # was journaled since is handed over as soon as the writer has stored the
                # rest: not a new segment at each look.
                now = time.monotonic()
                if now < due and not self._hand_over_now():
                    self._look()
                    continue
            due = now + self.interval
            try:
                self.flush()
            except Unavailable as exc:
                log.error("decision journal hand-over failed: %s", exc)
                if self.observer is not None:
                    self.observer.write_failed()
            if self.observer is not None:
                self.observer.backlog(max(waiting, self.backlog()))

    def _hand_over_now(self) -> bool:
        if self.journal.appended() >= self.max_backlog // 4:
            return True
        return bool(self._waiting) and self.journal.handed_over_all_stored()

    def _poll(self) -> float:
        return WAITING_POLL_S if self._waiting else self.interval
