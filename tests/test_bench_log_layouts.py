"""`python -m bench.log_layouts` writes the same decisions in both layouts it compares, each
chained: what it measures is the cost of storing them all, not of storing less."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import func, select

from authz.audit_trail import content, entry_hash
from authz.db import Database, make_engine
from authz.models import DecisionRecord
from authz.schema import GENESIS
from bench.log_layouts import BY_CONTRACT, BY_USER, GROUPS, PER_BATCH, Grouped, Shipped, batches


def test_both_layouts_hold_every_decision_chained(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'log.sqlite3'}"))
    written = list(batches(3 * PER_BATCH))
    decided = [e for batch in written for e in batch]
    for layout in (Shipped(), Grouped()):
        layout.create(db)
        layout.write(db, written[:2])
        layout.write(db, written[2:])
    with db.read() as s:
        records = s.scalars(select(DecisionRecord).order_by(DecisionRecord.seq)).all()
        groups = s.execute(select(GROUPS).order_by(GROUPS.c.seq)).all()
        contracts = s.scalars(
            select(BY_CONTRACT.c.contract_id).order_by(BY_CONTRACT.c.group_seq, BY_CONTRACT.c.item)
        ).all()
        users = s.execute(select(BY_USER.c.group_seq, BY_USER.c.user_id)).all()
        assert s.scalar(select(func.count()).select_from(DecisionRecord)) == len(decided)
    db.engine.dispose()

    assert [r.decision_id for r in records] == [e.decision_id for e in decided]
    prev = GENESIS
    for r in records:  # the shipped rows as `authz audit verify` checks them
        assert r.prev_hash == prev
        assert r.hash == entry_hash(prev, content(r))
        prev = r.hash

    assert [g.seq for g in groups] == [1, 2, 3]
    assert [g.prev_hash for g in groups] == [GENESIS] + [g.hash for g in groups[:-1]]
    stored = [e for g in groups for e in orjson.loads(g.entries)]
    assert [e["decision_id"] for e in stored] == [e.decision_id for e in decided]
    assert [e["input"] for e in stored] == [e.request for e in decided]
    assert contracts == [e.request["contract_id"] for e in decided]
    assert sorted(users) == [(i, b[0].request["user_id"]) for i, b in enumerate(written, 1)]
