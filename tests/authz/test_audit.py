"""The decision log: complete, hash-chained, tamper-evident, pruned without breaking."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from authz import audit, audit_trail
from authz.decisions import CheckRequest
from authz.errors import Unavailable
from authz.models import DECISION_BUCKET_BITS, DecisionChain, DecisionRecord
from authz.runtime import Runtime
from tests.conftest import T0, World, contract, log_refusing_writes


@pytest.fixture
def logged(world: World, rt: Runtime) -> Runtime:
    world.site("default")
    world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer", state="closed")])
    world.user("u1", "default", "A1")
    rt.decider.check(CheckRequest("u1", "view", "C1"), caller="portal-web")
    rt.decider.check_batch(
        [
            CheckRequest("u1", "make_payment", "C2", correlation_id="row-7"),
            CheckRequest("ghost", "view", "C1"),
        ],
        caller="payments",
    )
    rt.decider.explain(CheckRequest("u1", "make_payment", "C2", site_id="default"), "support")
    rt.log.flush()
    return rt


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


def test_filters_and_pages(logged: Runtime) -> None:
    assert len(audit.read(logged.db, user_id="ghost")) == 1
    assert len(audit.read(logged.db, contract_id="C2")) == 2
    newest = audit.read(logged.db, limit=2)
    older = audit.read(logged.db, limit=10, before_seq=newest[-1].seq)
    assert [r.seq for r in newest + older] == [4, 3, 2, 1]
    later = audit.read(logged.db, since=newest[0].at + timedelta(seconds=1))
    assert later == []


def test_since_takes_an_entry_made_on_that_very_time(rt: Runtime) -> None:
    """A time on a whole second too: SQLite compares times as text, and such a time was
    once written as '10:00:00', which sorts before the '10:00:00.000000' of `since`."""
    later = T0 + timedelta(microseconds=1)
    for at in (T0, later):
        rt.decider.clock = lambda at=at: at
        rt.decider.check(CheckRequest("u1", "view", "C1"))
    rt.log.flush()
    assert [r.at for r in audit.read(rt.db, since=T0)] == [later, T0]
    assert [r.at for r in audit.read(rt.db, since=later)] == [later]


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


def test_a_chain_moved_by_another_worker_meanwhile_is_built_again(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain is built before the write lock is taken; another worker's log writing in
    between moves the head, and the entries are chained again after it, in the lock."""
    other = Runtime.open(logged.settings)
    try:
        other.decider.check(CheckRequest("u1", "view", "C1"), caller="worker-2")
        logged.decider.check(CheckRequest("u1", "view", "C2"), caller="worker-1")
        build = audit._chain
        built: list[int] = []

        def meanwhile(seq: int, prev: str, prepared: list) -> list:  # type: ignore[type-arg]
            if prepared[0].entry.caller == "worker-1":  # this log's, not the other's
                if not built:
                    other.log.flush()  # lands between this log's read of the head and its lock
                built.append(seq)
            return build(seq, prev, prepared)

        monkeypatch.setattr(audit, "_chain", meanwhile)
        logged.log.flush()
    finally:
        other.close()
    assert built == [4, 5]  # built on the head as read, then again after worker-2's entry
    assert audit.verify(logged.db) == (6, [])
    assert [e.caller for e in audit.read(logged.db)][:2] == ["worker-1", "worker-2"]


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


def test_the_writer_writes_at_most_max_buffer_entries_per_transaction(
    logged: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So the memory a write takes is bounded however far behind the writer is."""
    sizes: list[int] = []
    write = logged.log._write

    def counted(entries: list[audit.LogEntry]) -> None:
        sizes.append(len(entries))
        write(entries)

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

    def busy(entries: list[audit.LogEntry]) -> None:
        sizes.append(len(entries))
        if len(sizes) == 1:
            logged.decider.check(CheckRequest("u1", "view", "C1"))  # arrives during the write
        write(entries)

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

    def slow(entries: list[audit.LogEntry]) -> None:
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


# Any text, with lone surrogates left out: neither form can encode those.
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
ENTRY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(TEXT, ENTRY_VALUES, max_size=12))
def test_canonical_bytes_are_the_stdlib_forms(row: dict) -> None:  # type: ignore[type-arg]
    """Entries hashed before orjson used json.dumps; they must verify the same way now."""
    stdlib = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert audit.canonical(row) == stdlib.encode()


@given(st.datetimes(timezones=st.just(UTC)))
def test_isoformat_is_the_stdlib_form(at: datetime) -> None:
    assert audit.isoformat(at) == at.isoformat()


def test_a_stored_entrys_hash_is_that_of_the_stdlib_form(logged: Runtime) -> None:
    """A real entry (time, reasons, input as stored) hashes as json.dumps would have hashed
    it before orjson, and entries written after it chain on."""
    with logged.db.write() as s:
        last = s.scalar(select(DecisionRecord).order_by(DecisionRecord.seq.desc()).limit(1))
        assert last is not None
        row = audit.content(last)
        stdlib = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert (
            audit.entry_hash(row["prev_hash"], row)
            == hashlib.sha256(row["prev_hash"].encode() + b"\n" + stdlib.encode()).hexdigest()
            == last.hash
        )
    logged.decider.check(CheckRequest("u1", "view", "C1"))
    logged.log.flush()
    assert audit.verify(logged.db) == (5, [])


@given(
    st.builds(
        audit.LogEntry,
        decision_id=TEXT,
        at=st.datetimes(timezones=st.just(UTC)),
        caller=TEXT,
        kind=st.sampled_from(["check", "batch", "explain"]),
        request=st.fixed_dictionaries(
            {"user_id": TEXT, "action": TEXT, "contract_id": TEXT, "site_id": st.none() | TEXT},
            optional={"correlation_id": TEXT},
        ),
        allowed=st.booleans(),
        policy_version=TEXT,
        data_version=st.integers(0, 2**63 - 1),
    ),
    st.lists(TEXT, max_size=3).map(tuple),
    st.integers(0, 2**62),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)
def test_the_writer_hashes_each_entrys_canonical_content(
    e: audit.LogEntry, reasons: tuple[str, ...], seq: int, prev: str
) -> None:
    """The writer builds the hashed bytes from parts serialized once (`_prepared`); the hash
    is `entry_hash` of the entry's content as `content` reads it back from its row."""
    (row,) = audit._chain(seq, prev, [audit._prepared(e, reasons)])
    stored = DecisionRecord(**dict(zip(audit.RECORD_COLUMNS, row, strict=True)))
    assert row[0] == seq + 1 and row[10] == prev
    assert row[-1] == audit.entry_hash(prev, audit.content(stored))


@pytest.mark.parametrize("per_statement", [32, 3])
def test_reads_by_user_and_by_contract_find_entries_in_every_bucket(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, per_statement: int
) -> None:
    """The user and contract indexes are searched bucket by bucket (2^16 entries each): a
    read finds what it should wherever the entries lie, empty buckets between them, the
    oldest in the anchor's bucket, pages crossing from one bucket to the next, in one
    statement or several. Stored rows are compared with the same filters applied to every
    row."""
    monkeypatch.setattr(audit_trail, "BUCKETS_PER_STATEMENT", per_statement)
    pick = random.Random(7)
    bits = DECISION_BUCKET_BITS
    seqs = sorted(
        pick.sample(range(5 << bits, (6 << bits) - 1), 60)  # the anchor's bucket
        + pick.sample(range(6 << bits, 7 << bits), 40)
        + pick.sample(range(9 << bits, 10 << bits), 80)  # after two empty buckets
        + [(12 << bits) - 1, 12 << bits]  # each side of a bucket's edge
    )
    rows = [
        DecisionRecord(
            seq=seq,
            decision_id=str(uuid.UUID(int=seq)),
            at=T0 + timedelta(seconds=pick.randrange(100)),
            caller="portal",
            kind="check",
            user_id=pick.choice(["u1", "u2", "u3"]),
            contract_id=pick.choice(["C1", "C2", "C3", "C4"]),
            input="{}",
            allowed=True,
            reasons="[]",
            policy_version="p",
            data_version=1,
            prev_hash="",
            hash="",
        )
        for seq in seqs
    ]
    with rt.db.write() as session:
        session.add_all(rows)
        session.execute(
            update(DecisionChain)
            .where(DecisionChain.id == 1)
            .values(anchor_seq=seqs[0] - 1, last_seq=seqs[-1])
        )
    since = T0 + timedelta(seconds=50)
    for user, contract_id, after in [
        ("u1", None, None),
        (None, "C3", None),
        ("u2", "C2", None),
        ("u3", None, since),
        ("nobody", None, None),
        (None, "C4", since),
    ]:
        expected = [
            r.seq
            for r in reversed(rows)
            if user in (None, r.user_id)
            and contract_id in (None, r.contract_id)
            and (after is None or r.at >= after)
        ]
        got: list[int] = []
        before = None
        while True:
            page = audit.read(rt.db, user, contract_id, after, 7, before)
            got.extend(r.seq for r in page)
            if len(page) < 7:
                break
            before = page[-1].seq
        assert got == expected, (user, contract_id, after)
