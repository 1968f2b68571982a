"""Workers that hand their journal over to a log writer process: every entry answered is
stored, by the writer, with its reasons; a writer behind or down holds decisions back."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from authz import audit, journal, log_rows
from authz.assurance import freeze
from authz.audit import Gathered, SqlDecisionLog
from authz.config import Settings
from authz.decisions import CheckRequest
from authz.errors import Unavailable
from authz.handover import HandOverLog
from authz.journal import SEALED, SUFFIX, Journal
from authz.log_entry import LogEntry
from authz.log_writer import WriterSettings, _step, run
from authz.models import DecisionRecord
from authz.policy import Policy
from authz.runtime import Runtime
from tests.conftest import World, contract


@pytest.fixture
def worker(settings: Settings) -> Iterator[Runtime]:
    """A runtime as a gunicorn worker runs it, with a long hand-over interval: the tests
    hand over with `flush`."""
    rt = Runtime.open(replace(settings, log_handover=True))
    assert isinstance(rt.log, HandOverLog)
    rt.log.interval = 3600
    rt.log._wake.set()  # the thread takes the new interval
    World(rt).site("default")
    World(rt).sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer", state="closed")])
    World(rt).user("u1", "default", "A1")
    yield rt
    rt.close()


def _writer(rt: Runtime, **kw: object) -> SqlDecisionLog:
    """A log writer's log, without a thread: the tests claim with `replay_orphans`."""
    assert rt.log.journal is not None
    journal = Journal(rt.log.journal.directory)
    return SqlDecisionLog(rt.db, rt.policy, journal, background=False, **kw)  # type: ignore[arg-type]


def _stored(rt: Runtime) -> dict[str, tuple[bool, list[str]]]:
    return {r.decision_id: (r.allowed, r.reasons) for r in audit.read(rt.db, limit=100)}


def _files(rt: Runtime) -> list[str]:
    assert rt.log.journal is not None
    return sorted(p.suffix for p in rt.log.journal.directory.iterdir())


def _decide(rt: Runtime) -> list[str]:
    ids = [rt.decider.check(CheckRequest("u1", "view", "C1"), caller="portal").decision_id]
    batch = [CheckRequest("u1", "make_payment", "C2"), CheckRequest("ghost", "view", "C1")]
    ids += [d.decision_id for d in rt.decider.check_batch(batch, caller="payments")]
    return ids


def test_a_worker_journals_and_hands_over_and_the_writer_stores_with_reasons(
    worker: Runtime,
) -> None:
    ids = _decide(worker)
    assert _stored(worker) == {}  # the worker writes nothing to the store
    assert worker.log.backlog() == 3
    assert _files(worker) == [SUFFIX]

    worker.log.flush()
    assert _files(worker) == [SEALED]  # handed over, not stored yet
    assert worker.log.backlog() == 3

    assert _writer(worker).replay_orphans() == 3
    assert _stored(worker) == {
        ids[0]: (True, []),
        ids[1]: (False, ["CONTRACT_CLOSED"]),  # worked out by the writer from the facts
        ids[2]: (False, ["USER_NOT_FOUND"]),
    }
    assert audit.verify(worker.db) == (3, [])
    assert _files(worker) == []
    worker.log.flush()
    assert worker.log.backlog() == 0


def test_a_handed_over_segment_is_not_claimed_while_its_process_appends(worker: Runtime) -> None:
    _decide(worker)
    assert _writer(worker).replay_orphans() == 0  # still this worker's, and locked
    assert _stored(worker) == {}
    worker.log.flush()
    _decide(worker)  # into a new segment, locked again
    assert _writer(worker).replay_orphans() == 3
    assert len(_stored(worker)) == 3
    assert worker.log.backlog() == 3


def test_past_the_backlog_bound_a_decision_waits_then_is_unavailable_and_not_journaled(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.log, "max_backlog", 3)
    monkeypatch.setattr(worker.log, "max_wait", 0.3)
    _decide(worker)
    worker.log.flush()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        worker.decider.check(CheckRequest("u1", "view", "C1"))
    assert time.monotonic() - started >= 0.3
    assert worker.log.backlog() == 3
    assert _writer(worker).replay_orphans() == 3  # the refused decision was never journaled


def test_a_waiting_decision_is_answered_once_the_writer_catches_up(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.log, "max_backlog", 3)
    monkeypatch.setattr(worker.log, "max_wait", 10.0)
    _decide(worker)
    worker.log.flush()
    writer = _writer(worker)
    catching_up = threading.Timer(0.3, writer.replay_orphans)
    catching_up.start()
    started = time.monotonic()
    decision = worker.decider.check(CheckRequest("u1", "view", "C1"))
    waited = time.monotonic() - started
    catching_up.join()
    assert 0.3 <= waited < 5
    assert len(_stored(worker)) == 3
    worker.log.flush()
    assert writer.replay_orphans() == 1
    assert decision.decision_id in _stored(worker)


def test_what_is_journaled_while_decisions_wait_is_handed_over_once_the_rest_is_stored(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entries that fill the backlog may all be in the segment still being appended to:
    a waiting decision has it handed over without waiting for the interval."""
    monkeypatch.setattr(worker.log, "max_backlog", 3)
    monkeypatch.setattr(worker.log, "max_wait", 10.0)
    _decide(worker)  # in the current segment; the interval is an hour
    writer = _writer(worker)
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
    assert len(_stored(worker)) == 3


def test_a_writer_finds_the_reasons_of_a_deny_of_an_earlier_policy_in_its_frozen_copy(
    worker: Runtime, tmp_path: Path
) -> None:
    newer = Policy(
        [replace(f, source=f.source + "\n# a newer version\n") for f in worker.policy.files]
    )
    assert newer.version != worker.policy.version
    freeze(worker.policy, tmp_path / "copies")
    ids = _decide(worker)
    worker.log.flush()
    with_copies = _writer(worker, policy_copies=tmp_path / "copies")
    with_copies._policy = newer  # the writer serves the newer version
    assert with_copies.replay_orphans() == 3
    assert _stored(worker)[ids[1]] == (False, ["CONTRACT_CLOSED"])

    ids = _decide(worker)
    worker.log.flush()
    without = _writer(worker)
    without._policy = newer
    assert without.replay_orphans() == 3
    assert _stored(worker)[ids[1]] == (False, [])  # stored all the same, without reasons


def test_a_segment_whose_first_entry_is_unstored_but_a_later_one_stored_is_not_written_twice(
    worker: Runtime,
) -> None:
    """Written in order by one process at a time, a segment's stored entries come first;
    were that broken, the unique id turns the write down and each entry is looked up."""
    ids = _decide(worker)
    worker.log.flush()
    writer = _writer(worker)
    assert worker.log.journal is not None
    [path] = worker.log.journal.directory.iterdir()
    segment = journal.Segment(path, os.open(path, os.O_RDONLY))
    entries = log_rows.entries_of(segment)
    segment.keep()
    writer._write(entries[2:])  # the last stored, the first not
    assert writer.replay_orphans() == 2
    assert sorted(_stored(worker)) == sorted(ids)
    assert audit.verify(worker.db) == (3, [])
    with worker.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DecisionRecord)) == 3


def test_a_segment_handed_over_after_it_was_opened_is_claimed_by_its_new_name_only(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _decide(worker)
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


def test_the_log_writer_stores_until_stopped_then_what_is_left(
    worker: Runtime, settings: Settings
) -> None:
    stop = threading.Event()
    writer = threading.Thread(
        target=run, args=(settings, WriterSettings(interval=0.05, nice=0), stop)
    )
    writer.start()
    try:
        first = _decide(worker)
        worker.log.flush()
        deadline = time.monotonic() + 10
        while len(_stored(worker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(_stored(worker)) == sorted(first)
        later = _decide(worker)
        worker.log.flush()
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert sorted(_stored(worker)) == sorted(first + later)
    assert audit.verify(worker.db) == (6, [])


def test_a_store_in_memory_has_no_log_writer() -> None:
    settings = Settings(database_url="sqlite://")
    with pytest.raises(ValueError, match="no journal"):
        run(settings, WriterSettings(nice=0), threading.Event())
    with Runtime.open(replace(settings, log_handover=True), migrate=True) as rt:
        assert isinstance(rt.log, SqlDecisionLog)  # it writes its own


def test_a_staged_line_is_stored_as_the_entry_it_was_made_of(tmp_path: Path) -> None:
    """A worker that hands its journal over writes each entry's canonical bytes already
    made; chained by the writer, they give the rows, hashes and all, that the entry itself
    gives (as a writer thread stores it)."""
    at = datetime(2026, 11, 27, 5, 30, 1, 123456, tzinfo=UTC)
    request = {"user_id": "u", "action": "view", "contract_id": "C1", "correlation_id": "é\n"}
    deny = LogEntry("d1", at, "portal", "batch", request, False, "p", 7)
    deny = replace(deny, user={"found": True, "site_id": "s"}, contract={"roles": ["Customer"]})
    entries = [
        deny,
        replace(deny, decision_id="d2", allowed=True),
        replace(deny, decision_id="d3", kind="explain", reasons=("CONTRACT_CLOSED",)),
        replace(deny, decision_id="d4", at=datetime(2026, 11, 27, 5, 30, 2, tzinfo=UTC)),
    ]
    shared = log_rows.SharedKeys()
    path = tmp_path / "segment.sealed"
    path.write_bytes(b"".join(log_rows.staged_line(e, shared) for e in entries))
    segment = journal.Segment(path, os.open(path, os.O_RDONLY))
    staged = log_rows.entries_of(segment)
    segment.keep()
    assert all(isinstance(s, log_rows.Staged) for s in staged)

    def reasons(e: LogEntry | log_rows.Staged) -> tuple[str, ...]:
        if e.reasons is not None or e.allowed:
            return e.reasons or ()
        return tuple(orjson.dumps(f, option=orjson.OPT_SORT_KEYS).decode() for f in facts(e))

    def facts(e: LogEntry | log_rows.Staged) -> tuple[object, object]:
        if isinstance(e, log_rows.Staged):  # as JSON
            return orjson.loads(e.user or b"0"), orjson.loads(e.contract or b"0")
        return e.user, e.contract

    prev = "0" * 64
    got = list(log_rows.Chained(0, prev, staged, reasons))
    assert got == list(log_rows.Chained(0, prev, entries, reasons))
    for row in got:
        stored = DecisionRecord(**dict(zip(log_rows.RECORD_COLUMNS, row, strict=True)))
        assert row[-1] == audit.entry_hash(prev, audit.content(stored))
        prev = row[-1]


def _three_segments(worker: Runtime) -> list[str]:
    ids = []
    for _ in range(3):
        ids += _decide(worker)
        worker.log.flush()
    assert _files(worker) == [SEALED] * 3
    return ids


def _write_sizes(writer: SqlDecisionLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of entries of each of the writer's transactions, as they come."""
    sizes: list[int] = []
    write = writer._write

    def counted(entries: list[object]) -> None:
        sizes.append(len(entries))
        write(entries)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "_write", counted)
    return sizes


def test_consecutive_segments_are_written_together_up_to_max_buffer(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _three_segments(worker)
    writer = _writer(worker, max_buffer=6)
    sizes = _write_sizes(writer, monkeypatch)
    assert writer.replay_orphans() == 9
    assert sizes == [6, 3]
    assert sorted(_stored(worker)) == sorted(ids)
    assert audit.verify(worker.db) == (9, [])
    assert _files(worker) == []


def test_a_failed_write_keeps_every_segment_written_with_it(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _three_segments(worker)
    writer = _writer(worker)

    def down(entries: object) -> None:
        raise RuntimeError("the store refuses writes")

    monkeypatch.setattr(writer, "_write", down)
    with pytest.raises(RuntimeError):
        writer.replay_orphans()
    assert _files(worker) == [SEALED] * 3
    monkeypatch.undo()
    assert _writer(worker).replay_orphans() == 9
    assert sorted(_stored(worker)) == sorted(ids)


def test_the_log_writer_gathers_what_is_handed_over_within_its_interval_into_one_write(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _writer(worker)
    sizes = _write_sizes(writer, monkeypatch)
    gathered = Gathered()
    ids = _decide(worker)
    worker.log.flush()
    _step(writer, gathered, interval=3600)
    ids += _decide(worker)
    worker.log.flush()
    _step(writer, gathered, interval=3600)
    assert (sizes, _stored(worker), len(gathered.group)) == ([], {}, 2)  # waiting
    _step(writer, gathered, interval=0)  # the first has waited long enough
    assert sizes == [6]
    assert sorted(_stored(worker)) == sorted(ids)
    assert _files(worker) == []

    writer.max_buffer = 4
    for _ in range(2):
        ids += _decide(worker)
        worker.log.flush()
    _step(writer, gathered, interval=3600)  # a transaction's worth does not wait
    assert sizes == [6, 4, 2]
    assert sorted(_stored(worker)) == sorted(ids)


def test_the_log_writer_keeps_what_it_cannot_write_and_says_so(
    worker: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failures:
        count = 0

        def backlog(self, entries: int) -> None:
            raise AssertionError("the writer has no backlog of its own")

        def write_failed(self) -> None:
            self.count += 1

    def down(self: SqlDecisionLog, entries: object) -> None:
        raise RuntimeError("the store refuses writes")

    monkeypatch.setattr(SqlDecisionLog, "_write", down)
    failures, stop = Failures(), threading.Event()
    writer = threading.Thread(
        target=run, args=(settings, WriterSettings(interval=0, nice=0), stop, failures)
    )
    _decide(worker)
    worker.log.flush()
    writer.start()
    deadline = time.monotonic() + 10
    while not failures.count and time.monotonic() < deadline:
        time.sleep(0.05)
    monkeypatch.undo()  # the store is back: what was kept is written
    deadline = time.monotonic() + 10
    while len(_stored(worker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    writer.join(timeout=30)
    assert failures.count >= 1
    assert len(_stored(worker)) == 3
    assert _files(worker) == []
