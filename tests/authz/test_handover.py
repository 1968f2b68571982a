"""Workers that hand their journal over to a log writer process: every entry answered is
stored, by the writer, with its reasons; a writer behind or down holds decisions back."""

from __future__ import annotations

import fcntl
import threading
import time

import pytest

from authz import audit, journal
from authz.decisions import CheckRequest
from authz.errors import Unavailable
from authz.journal import SEALED, SUFFIX, Journal
from authz.runtime import Runtime
from tests.authz.handing_over import decide, files, stored, writer_of


def test_a_worker_journals_and_hands_over_and_the_writer_stores_with_reasons(
    worker: Runtime,
) -> None:
    ids = decide(worker)
    assert stored(worker) == {}  # the worker writes nothing to the store
    assert worker.log.backlog() == 3
    assert files(worker) == [SUFFIX]

    worker.log.flush()
    assert files(worker) == [SEALED]  # handed over, not stored yet
    assert worker.log.backlog() == 3

    assert writer_of(worker).replay_orphans() == 3
    assert stored(worker) == {
        ids[0]: (True, []),
        ids[1]: (False, ["CONTRACT_CLOSED"]),  # worked out by the writer from the facts
        ids[2]: (False, ["USER_NOT_FOUND"]),
    }
    assert audit.verify(worker.db) == (3, [])
    assert files(worker) == []
    worker.log.flush()
    assert worker.log.backlog() == 0


def test_a_handed_over_segment_is_not_claimed_while_its_process_appends(worker: Runtime) -> None:
    decide(worker)
    assert writer_of(worker).replay_orphans() == 0  # still this worker's, and locked
    assert stored(worker) == {}
    worker.log.flush()
    decide(worker)  # into a new segment, locked again
    assert writer_of(worker).replay_orphans() == 3
    assert len(stored(worker)) == 3
    assert worker.log.backlog() == 3


def test_past_the_backlog_bound_a_decision_waits_then_is_unavailable_and_not_journaled(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.log, "max_backlog", 3)
    monkeypatch.setattr(worker.log, "max_wait", 0.3)
    decide(worker)
    worker.log.flush()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        worker.decider.check(CheckRequest("u1", "view", "C1"))
    assert time.monotonic() - started >= 0.3
    assert worker.log.backlog() == 3
    assert writer_of(worker).replay_orphans() == 3  # the refused decision was never journaled


def test_a_waiting_decision_is_answered_once_the_writer_catches_up(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.log, "max_backlog", 3)
    monkeypatch.setattr(worker.log, "max_wait", 10.0)
    decide(worker)
    worker.log.flush()
    writer = writer_of(worker)
    catching_up = threading.Timer(0.3, writer.replay_orphans)
    catching_up.start()
    started = time.monotonic()
    decision = worker.decider.check(CheckRequest("u1", "view", "C1"))
    waited = time.monotonic() - started
    catching_up.join()
    assert 0.3 <= waited < 5
    assert len(stored(worker)) == 3
    worker.log.flush()
    assert writer.replay_orphans() == 1
    assert decision.decision_id in stored(worker)


def test_what_is_journaled_while_decisions_wait_is_handed_over_once_the_rest_is_stored(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entries that fill the backlog may all be in the segment still being appended to:
    a waiting decision has it handed over without waiting for the interval."""
    monkeypatch.setattr(worker.log, "max_backlog", 3)
    monkeypatch.setattr(worker.log, "max_wait", 10.0)
    decide(worker)  # in the current segment; the interval is an hour
    writer = writer_of(worker)
    stop = threading.Event()

    def claiming() -> None:
        while not stop.wait(0.05):
            writer.replay_orphans()

    claimer = threading.Thread(target=claiming)
    claimer.start()
    try:
        worker.decider.check(CheckRequest("u1", "view", "C1"))
    finally:
        stop.set()
        claimer.join()
    assert len(stored(worker)) == 3


def test_a_segment_handed_over_after_it_was_opened_is_claimed_by_its_new_name_only(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide(worker)
    worker.log.journal.seal()  # type: ignore[union-attr]
    real = fcntl.flock

    def handed_over_meanwhile(fd: int, op: int) -> None:
        worker.log.journal.hand_over()  # type: ignore[union-attr]
        monkeypatch.setattr(journal.fcntl, "flock", real)
        real(fd, op)

    monkeypatch.setattr(journal.fcntl, "flock", handed_over_meanwhile)
    claimer = Journal(worker.log.journal.directory)  # type: ignore[union-attr]
    # Listed and opened by its old name, locked once handed over: not claimed by that name
    # (deleting it after storing would delete nothing), but by its new one, the next time.
    assert [s.path.name for s in claimer.orphans()] == []
    for segment in (claimed := list(claimer.orphans())):
        segment.keep()
    assert [s.path.suffix for s in claimed] == [SEALED]
