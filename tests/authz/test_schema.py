"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from authz import audit
from authz.config import Settings
from authz.db import Database, make_engine
from authz.decisions import CheckRequest
from authz.models import Base
from authz.runtime import Runtime
from authz.schema import downgrade, upgrade
from tests.conftest import POLICIES


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def _decision_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT seq, decision_id, hash FROM decisions ORDER BY seq")))


def _indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {row[1] for row in conn.execute(text("PRAGMA index_list('decisions')"))}


def test_on_sqlite_0005_makes_seq_the_rowid_and_keeps_every_entry(tmp_path: Path) -> None:
    """Entries logged before the rebuild keep their seq, ids and chain; the seq index is gone
    (the rowid is the key); downgrading brings it back with the entries."""
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = make_engine(url)
    upgrade(engine, "0004")
    rt = Runtime.open(Settings(database_url=url, policy_dir=POLICIES))
    rt.decider.check_batch([CheckRequest(f"u{i}", "view", f"C{i}") for i in range(7)])
    rt.close()
    before = _decision_rows(engine)
    assert len(before) == 7 and len(_indexes(engine)) == 5  # seq and decision_id unique, 3 more

    upgrade(engine)
    assert _decision_rows(engine) == before
    assert len(_indexes(engine)) == 4
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM decisions WHERE rowid = seq")).scalar() == 7
    assert audit.verify(Database(engine)) == (7, [])

    downgrade(engine, "0004")
    assert _decision_rows(engine) == before and len(_indexes(engine)) == 5
    engine.dispose()
