"""The decision log: complete, hash-chained, tamper-evident, pruned without breaking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from authz import audit, log_rows
from authz.audit import LogEntry
from authz.decisions import CheckRequest, decision_ids
from authz.errors import Unavailable
from authz.log_rows import RECORD_COLUMNS
from authz.models import DecisionRecord
from authz.runtime import Runtime
from tests.conftest import World, log_refusing_writes


def test_every_decision_is_recorded_with_who_what_and_why(logged: Runtime) -> None:
    rows = audit.read(logged.db)
    assert [(r.kind, r.caller, r.allowed, r.reasons) for r in rows] == [
        ("explain", "support", False, ["CONTRACT_CLOSED"]),
        ("batch", "payments", False, ["USER_NOT_FOUND"]),
        ("batch", "payments", False, ["CONTRACT_CLOSED"]),
        ("check", "portal-web", True, []),
    ]
    assert rows[2].input == {
        "user_id": "u1",
        "action": "make_payment",
        "contract_id": "C2",
        "site_id": None,
        "correlation_id": "row-7",
    }
    assert {r.policy_version for r in rows} == {logged.policy.version}
    assert {r.data_version for r in rows} == {logged.replica.status().freshness.data_version}


def test_close_writes_what_is_buffered(settings, world: World) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime.open(settings)
    rt.log.interval = 3600  # the writer thread would not run during this test
    rt.decider.check(CheckRequest("u", "view", "C"))
    assert rt.log.backlog() == 1
    rt.close()
    with Runtime.open(settings) as again:
        assert len(audit.read(again.db)) == 1


def test_an_intact_chain_verifies(logged: Runtime) -> None:
    assert audit.verify(logged.db) == (4, [])


def _tamper(rt: Runtime, statement: object) -> list[str]:
    with rt.db.write() as s:
        s.execute(statement)
    _, problems = audit.verify(rt.db)
    return [p.what for p in problems]


def test_an_edited_entry_is_detected(logged: Runtime) -> None:
    found = _tamper(
        logged, update(DecisionRecord).where(DecisionRecord.seq == 1).values(allowed=False)
    )
    assert any("changed" in p for p in found)


def test_a_deleted_entry_is_detected(logged: Runtime) -> None:
    found = _tamper(logged, delete(DecisionRecord).where(DecisionRecord.seq == 2))
    assert any("missing" in p for p in found)


def test_a_deleted_newest_entry_is_detected(logged: Runtime) -> None:
    found = _tamper(logged, delete(DecisionRecord).where(DecisionRecord.seq == 4))
    assert any("newest" in p for p in found)


def test_reordered_entries_are_detected(logged: Runtime) -> None:
    with logged.db.write() as s:
        s.execute(update(DecisionRecord).where(DecisionRecord.seq == 2).values(seq=-2))
        s.execute(update(DecisionRecord).where(DecisionRecord.seq == 3).values(seq=2))
        s.execute(update(DecisionRecord).where(DecisionRecord.seq == -2).values(seq=3))
    _, problems = audit.verify(logged.db)
    assert problems


def test_pruning_keeps_the_chain_verifiable(logged: Runtime) -> None:
    with logged.db.read() as s:
        explained = s.scalar(select(DecisionRecord.at).where(DecisionRecord.seq == 4))
    assert audit.prune(logged.db, explained) == 3  # the check and the batch's two decisions
    assert audit.verify(logged.db) == (1, [])
    logged.decider.check(CheckRequest("u1", "view", "C1"))
    logged.log.flush()
    assert audit.verify(logged.db) == (2, [])


def test_a_batchs_decisions_are_made_at_one_time(logged: Runtime) -> None:
    batch = [r for r in audit.read(logged.db) if r.kind == "batch"]
    assert len(batch) == 2 and batch[0].at == batch[1].at


def _chains_of(
    log_caller: str,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[], object] | None = None,
) -> list[int]:
    """The seq after which each chain of `log_caller`'s entries is built from now on;
    `meanwhile` runs once, as the first such build starts."""
    built: list[int] = []

    class Spy(log_rows.Chained):
        def __iter__(self) -> Iterator[tuple[Any, ...]]:
            start = self.seq
            rows = super().__iter__()
            first = next(rows, None)
            if first is None:
                return
            if first[RECORD_COLUMNS.index("caller")] == log_caller:  # not another log's
                if not built and meanwhile is not None:
                    meanwhile()
                built.append(start)
            yield first
            yield from rows

    monkeypatch.setattr(log_rows, "Chained", Spy)
    return built


def test_a_log_writing_alone_chains_each_write_once(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture's write found no head it had left (its first), so the next write chains
    in the lock; after that one, the log knows the head and builds the chain before."""
    built = _chains_of("worker-1", monkeypatch)
    for _ in range(3):
        logged.decider.check(CheckRequest("u1", "view", "C1"), caller="worker-1")
        logged.log.flush()
    assert built == [4, 5, 6]  # once per write
    assert audit.verify(logged.db) == (7, [])


def test_a_chain_moved_by_another_worker_meanwhile_is_built_again(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain is built on the head this log left, before the write lock is taken;
    another worker's log writing in between moves the head, and the entries are chained
    again after it, in the lock."""
    logged.decider.check(CheckRequest("u1", "view", "C1"), caller="worker-1")
    logged.log.flush()  # the log knows the head now: it wrote last, twice in a row
    other = Runtime.open(logged.settings)
    try:
        other.decider.check(CheckRequest("u1", "view", "C1"), caller="worker-2")
        logged.decider.check(CheckRequest("u1", "view", "C2"), caller="worker-1")
        built = _chains_of("worker-1", monkeypatch, other.log.flush)
        logged.log.flush()
        assert built == [5, 6]  # built on the head it left, then again after worker-2's entry
        # After a move, the next write chains once, in the lock (the head likely moved again).
        other.decider.check(CheckRequest("u1", "view", "C1"), caller="worker-2")
        other.log.flush()
        logged.decider.check(CheckRequest("u1", "view", "C1"), caller="worker-1")
        logged.log.flush()
        assert built == [5, 6, 8]
    finally:
        other.close()
    assert audit.verify(logged.db) == (9, [])
    assert [e.caller for e in audit.read(logged.db)][:5] == [
        "worker-1",
        "worker-2",
        "worker-1",
        "worker-2",
        "worker-1",
    ]


def test_entries_written_together_keep_each_its_own_time(rt: Runtime) -> None:
    """The writer converts a time that repeats the row before's once (a batch's decisions
    share theirs): a time that repeats, changes, or comes back is stored as given."""
    t1 = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    t2 = t1 + timedelta(seconds=1)
    times = [t1, t1, t2, t1, t2, t2 + timedelta(microseconds=1), t1]
    ids = decision_ids(len(times))
    rt.log.record(
        [
            LogEntry(
                i,
                at,
                "portal",
                "batch",
                {"user_id": "u1", "action": "view", "contract_id": "C1", "site_id": None},
                n % 3 == 0,
                rt.policy.version,
                1,
                (),
            )
            for n, (i, at) in enumerate(zip(ids, times, strict=True))
        ]
    )
    rt.log.flush()
    stored = {e.decision_id: (e.at, e.allowed) for e in audit.read(rt.db)}
    assert [stored[i] for i in ids] == [(at, n % 3 == 0) for n, at in enumerate(times)]
    assert audit.verify(rt.db) == (len(times), [])


def test_a_failed_write_keeps_the_entries(logged: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(entries: object) -> None:
        raise RuntimeError("store down")

    logged.decider.check(CheckRequest("u1", "view", "C1"))
    monkeypatch.setattr(logged.log, "_write", down)
    with pytest.raises(RuntimeError):
        logged.log.flush()
    assert logged.log.backlog() == 1
    monkeypatch.undo()
    logged.log.flush()
    assert logged.log.backlog() == 0 and len(audit.read(logged.db)) == 5


class Watcher:
    def __init__(self) -> None:
        self.backlogs: list[int] = []
        self.failures = 0

    def backlog(self, entries: int) -> None:
        self.backlogs.append(entries)

    def write_failed(self) -> None:
        self.failures += 1


def test_the_writer_reports_its_backlog_and_failed_writes(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(entries: object) -> None:
        raise RuntimeError("store down")

    watcher = Watcher()
    logged.log.observer = watcher
    monkeypatch.setattr(logged.log, "_write", down)
    logged.decider.check(CheckRequest("u1", "view", "C1"))
    deadline = time.monotonic() + 10
    while watcher.failures < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watcher.failures >= 2 and watcher.backlogs[-1] == 1
    monkeypatch.undo()
    while watcher.backlogs[-1] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watcher.backlogs[-1] == 0 and len(audit.read(logged.db)) == 5


def test_the_backlog_reported_is_what_waited_before_a_write_not_after(logged: Runtime) -> None:
    watcher = Watcher()
    logged.log.observer = watcher
    logged.decider.check_batch([CheckRequest("u1", "view", "C1")] * 7)
    deadline = time.monotonic() + 10
    while 7 not in watcher.backlogs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 7 in watcher.backlogs and watcher.failures == 0
    assert len(audit.read(logged.db)) == 4 + 7


def test_sqlite_logs_write_bigger_transactions_than_postgresql_logs(rt: Runtime) -> None:
    """A SQLite transaction rewrites each index page it touches, so 20,000 entries per write
    cost less per entry than 5,000; on PostgreSQL they cost as much and waited longer."""
    expected = (20_000, 40_000) if rt.db.is_sqlite else (5_000, 20_000)
    assert (rt.log.max_buffer, rt.log.max_backlog) == expected


def test_the_writer_writes_at_most_max_buffer_entries_per_transaction(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So the memory a write takes is bounded however far behind the writer is."""
    sizes: list[int] = []
    write = logged.log._write

    def counted(entries: Iterable[audit.LogEntry]) -> None:
        write(entries)
        sizes.append(sum(1 for _ in entries))  # iterated again: the entries it took

    monkeypatch.setattr(logged.log, "_write", counted)
    monkeypatch.setattr(logged.log, "max_buffer", 4)
    logged.decider.check_batch([CheckRequest("u1", "view", "C1")] * 10)
    logged.log.flush()
    assert max(sizes) == 4 and sum(sizes) == 10
    assert audit.verify(logged.db) == (4 + 10, [])


def test_a_flush_writes_what_waited_when_it_began_not_what_comes_meanwhile(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under steady load, chasing arrivals would turn one write per interval into a stream
    of tiny ones (each a transaction, a head read and a commit)."""
    sizes: list[int] = []
    write = logged.log._write

    def busy(entries: Iterable[audit.LogEntry]) -> None:
        if not sizes:
            logged.decider.check(CheckRequest("u1", "view", "C1"))  # arrives during the write
        write(entries)
        sizes.append(sum(1 for _ in entries))

    logged.log.close()  # no background writer taking turns with this test's flush
    monkeypatch.setattr(logged.log, "_write", busy)
    logged.decider.check_batch([CheckRequest("u1", "view", "C1")] * 3)
    logged.log.flush()
    assert sizes == [3] and logged.log.backlog() == 1


def test_past_the_backlog_bound_a_decision_is_unavailable_and_not_recorded(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refusing writes: entries pile up to `max_backlog`; a decision past it waits
    `max_wait`, then is a 503 that buffered nothing. Every decision answered is written once
    the store is back."""
    log_refusing_writes(logged, monkeypatch, max_backlog=3, max_wait=0.3)
    logged.decider.check(CheckRequest("u1", "view", "C1"))
    logged.decider.check_batch([CheckRequest("u1", "view", "C1")] * 2)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="decision log is behind"):
        logged.decider.check(CheckRequest("u1", "view", "C1"))
    assert time.monotonic() - started >= 0.3
    with pytest.raises(Unavailable):
        logged.decider.explain(CheckRequest("u1", "view", "C1", site_id="default"))
    assert logged.log.backlog() == 3
    monkeypatch.undo()
    logged.log.flush()
    assert audit.verify(logged.db) == (4 + 3, [])


def test_a_decision_waits_for_room_while_the_writer_catches_up(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow write holds the backlog at its bound: the next decision waits (no answer, no
    error) and is answered as soon as the writer takes the waiting entries."""
    writing, release = threading.Event(), threading.Event()
    write = logged.log._write

    def slow(entries: Iterable[audit.LogEntry]) -> None:
        list(entries)  # takes them from the backlog, as a write does building their rows
        writing.set()
        release.wait(10)
        write(entries)

    monkeypatch.setattr(logged.log, "_write", slow)
    monkeypatch.setattr(logged.log, "max_backlog", 2)
    monkeypatch.setattr(logged.log, "max_wait", 10.0)
    logged.decider.check(CheckRequest("u1", "view", "C1"))
    assert writing.wait(5)  # the writer holds that entry
    logged.decider.check_batch([CheckRequest("u1", "view", "C1")] * 2)
    answered: list[bool] = []
    waiting = threading.Thread(
        target=lambda: answered.append(
            logged.decider.check(CheckRequest("u1", "view", "C1")).allowed
        )
    )
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive() and answered == [] and logged.log.backlog() == 2
    release.set()
    waiting.join(10)
    assert answered == [True]
    monkeypatch.undo()
    logged.log.flush()
    assert audit.verify(logged.db) == (4 + 4, [])
