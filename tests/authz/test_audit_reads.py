"""Reading the decision log: filters, pages, times, and the indexes by bucket."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from authz import audit, audit_trail
from authz.decisions import CheckRequest
from authz.models import DECISION_BUCKET_BITS, DecisionChain, DecisionRecord
from authz.runtime import Runtime
from tests.conftest import T0


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


@pytest.mark.parametrize("per_statement", [audit_trail.BUCKETS_PER_STATEMENT, 3])
def test_reads_by_user_and_by_contract_find_entries_in_every_bucket(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, per_statement: int
) -> None:
    """The user and contract indexes are searched bucket by bucket (2^DECISION_BUCKET_BITS
    entries each): a read finds what it should wherever the entries lie, empty buckets
    between them, the oldest in the anchor's bucket, pages crossing from one bucket to the
    next, in one statement or several. Stored rows are compared with the same filters
    applied to every row."""
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
