"""The benchmark starts each run from an empty decision log (bench/common.py, empty_log)."""

from __future__ import annotations

from sqlalchemy import func, select

from authz import audit
from authz.config import Settings
from authz.db import Database
from authz.decisions import CheckRequest
from authz.models import DecisionRecord
from authz.runtime import Runtime
from bench.common import empty_log
from tests.conftest import World, contract

CHECKS = [CheckRequest("u1", "view", "C1"), CheckRequest("u2", "view", "C1")]


def _decide(settings: Settings, batches: int) -> None:
    with Runtime.open(settings) as rt:
        for _ in range(batches):
            rt.decider.check_batch(CHECKS)
        rt.log.flush()


def test_an_emptied_log_holds_nothing_and_its_new_entries_verify(settings: Settings) -> None:
    with Runtime.open(settings) as rt:
        World(rt).sync([contract("C1", "A1:Customer")])
    _decide(settings, 3)

    assert empty_log(settings.database_url) == 6

    db = Database.from_url(settings.database_url)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DecisionRecord)) == 0
    _decide(settings, 2)
    seqs = [r.seq for r in audit.read(db)]
    assert seqs == [4, 3, 2, 1]  # the chain starts again from its first entry
    assert audit.verify(db) == (4, [])
    db.dispose()
    assert empty_log(settings.database_url) == 4
