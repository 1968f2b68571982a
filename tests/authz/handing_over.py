"""What the tests of workers handing their journal over, and of the log writer, share."""

from __future__ import annotations

import pytest

from authz import audit
from authz.audit import SqlDecisionLog
from authz.decisions import CheckRequest
from authz.journal import SEALED, Journal
from authz.runtime import Runtime


def writer_of(rt: Runtime, **kw: object) -> SqlDecisionLog:
    """A log writer's log, without a thread: the tests claim with `replay_orphans`."""
    assert rt.log.journal is not None
    journal = Journal(rt.log.journal.directory)
    return SqlDecisionLog(rt.db, rt.policy, journal, background=False, **kw)  # type: ignore[arg-type]


def stored(rt: Runtime) -> dict[str, tuple[bool, list[str]]]:
    return {r.decision_id: (r.allowed, r.reasons) for r in audit.read(rt.db, limit=100)}


def files(rt: Runtime) -> list[str]:
    assert rt.log.journal is not None
    return sorted(p.suffix for p in rt.log.journal.directory.iterdir())


def decide(rt: Runtime) -> list[str]:
    ids = [rt.decider.check(CheckRequest("u1", "view", "C1"), caller="portal").decision_id]
    batch = [CheckRequest("u1", "make_payment", "C2"), CheckRequest("ghost", "view", "C1")]
    ids += [d.decision_id for d in rt.decider.check_batch(batch, caller="payments")]
    return ids


def write_sizes(writer: SqlDecisionLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of entries of each of the writer's transactions, as they come."""
    sizes: list[int] = []
    write = writer._write

    def counted(entries: list[object]) -> None:
        sizes.append(len(entries))
        write(entries)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "_write", counted)
    return sizes


def three_segments(worker: Runtime) -> list[str]:
    ids = []
    for _ in range(3):
        ids += decide(worker)
        worker.log.flush()
    assert files(worker) == [SEALED] * 3
    return ids
