"""The log writer: what workers hand over is stored whole, once, in order, with the reasons
of its denies, in few transactions; what it cannot write waits in the journal."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from authz import audit, journal, log_rows
from authz.assurance import freeze
from authz.audit import SqlDecisionLog
from authz.config import Settings
from authz.journal import SEALED
from authz.log_entry import LogEntry
from authz.log_reasons import DenialReasons
from authz.log_rows import Gathered
from authz.log_writer import WriterSettings, _step, run
from authz.models import DecisionRecord
from authz.policy import Policy
from authz.runtime import Runtime
from tests.authz.handing_over import decide, files, stored, three_segments, write_sizes, writer_of


def test_a_writer_finds_the_reasons_of_a_deny_of_an_earlier_policy_in_its_frozen_copy(
    worker: Runtime, tmp_path: Path
) -> None:
    newer = Policy(
        [replace(f, source=f.source + "\n# a newer version\n") for f in worker.policy.files]
    )
    assert newer.version != worker.policy.version
    freeze(worker.policy, tmp_path / "copies")
    ids = decide(worker)
    worker.log.flush()
    with_copies = writer_of(worker, policy_copies=tmp_path / "copies")
    with_copies._reasons = DenialReasons(newer, tmp_path / "copies")  # it serves the newer
    assert with_copies.replay_orphans() == 3
    assert stored(worker)[ids[1]] == (False, ["CONTRACT_CLOSED"])

    ids = decide(worker)
    worker.log.flush()
    without = writer_of(worker)
    without._reasons = DenialReasons(newer)
    assert without.replay_orphans() == 3
    assert stored(worker)[ids[1]] == (False, [])  # stored all the same, without reasons


def test_a_segment_whose_first_entry_is_unstored_but_a_later_one_stored_is_not_written_twice(
    worker: Runtime,
) -> None:
    """Written in order by one process at a time, a segment's stored entries come first;
    were that broken, the unique id turns the write down and each entry is looked up."""
    ids = decide(worker)
    worker.log.flush()
    writer = writer_of(worker)
    assert worker.log.journal is not None
    [path] = worker.log.journal.directory.iterdir()
    segment = journal.Segment(path, os.open(path, os.O_RDONLY))
    entries = log_rows.entries_of(segment)
    segment.keep()
    writer._write(entries[2:])  # the last stored, the first not
    assert writer.replay_orphans() == 2
    assert sorted(stored(worker)) == sorted(ids)
    assert audit.verify(worker.db) == (3, [])
    with worker.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DecisionRecord)) == 3


def test_the_log_writer_stores_until_stopped_then_what_is_left(
    worker: Runtime, settings: Settings
) -> None:
    stop = threading.Event()
    writer = threading.Thread(
        target=run, args=(settings, WriterSettings(interval=0.05, nice=0), stop)
    )
    writer.start()
    try:
        first = decide(worker)
        worker.log.flush()
        deadline = time.monotonic() + 10
        while len(stored(worker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(stored(worker)) == sorted(first)
        later = decide(worker)
        worker.log.flush()
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert sorted(stored(worker)) == sorted(first + later)
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


def test_consecutive_segments_are_written_together_up_to_max_buffer(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = three_segments(worker)
    writer = writer_of(worker, max_buffer=6)
    sizes = write_sizes(writer, monkeypatch)
    assert writer.replay_orphans() == 9
    assert sizes == [6, 3]
    assert sorted(stored(worker)) == sorted(ids)
    assert audit.verify(worker.db) == (9, [])
    assert files(worker) == []


def test_a_failed_write_keeps_every_segment_written_with_it(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = three_segments(worker)
    writer = writer_of(worker)

    def down(entries: object) -> None:
        raise RuntimeError("the store refuses writes")

    monkeypatch.setattr(writer, "_write", down)
    with pytest.raises(RuntimeError):
        writer.replay_orphans()
    assert files(worker) == [SEALED] * 3
    monkeypatch.undo()
    assert writer_of(worker).replay_orphans() == 9
    assert sorted(stored(worker)) == sorted(ids)


def test_the_log_writer_gathers_what_is_handed_over_within_its_interval_into_one_write(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = writer_of(worker)
    sizes = write_sizes(writer, monkeypatch)
    gathered = Gathered()
    ids = decide(worker)
    worker.log.flush()
    _step(writer, gathered, interval=3600)
    ids += decide(worker)
    worker.log.flush()
    _step(writer, gathered, interval=3600)
    assert (sizes, stored(worker), len(gathered.group)) == ([], {}, 2)  # waiting
    _step(writer, gathered, interval=0)  # the first has waited long enough
    assert sizes == [6]
    assert sorted(stored(worker)) == sorted(ids)
    assert files(worker) == []

    writer.max_buffer = 4
    for _ in range(2):
        ids += decide(worker)
        worker.log.flush()
    _step(writer, gathered, interval=3600)  # a transaction's worth does not wait
    assert sizes == [6, 4, 2]
    assert sorted(stored(worker)) == sorted(ids)


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
    decide(worker)
    worker.log.flush()
    writer.start()
    deadline = time.monotonic() + 10
    while not failures.count and time.monotonic() < deadline:
        time.sleep(0.05)
    monkeypatch.undo()  # the store is back: what was kept is written
    deadline = time.monotonic() + 10
    while len(stored(worker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    writer.join(timeout=30)
    assert failures.count >= 1
    assert len(stored(worker)) == 3
    assert files(worker) == []
