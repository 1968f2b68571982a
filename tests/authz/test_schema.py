"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.dialects import sqlite

from authz import audit
from authz.config import Settings
from authz.db import Database, make_engine
from authz.decisions import CheckRequest
from authz.models import Base, UtcDateTime
from authz.runtime import Runtime
from authz.schema import downgrade, upgrade
from tests.conftest import POLICIES, T0


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


def test_on_sqlite_0006_gives_whole_second_times_the_form_since_compares(
    tmp_path: Path,
) -> None:
    """An entry written on a whole second by the old bulk insert ('10:00:00') is found by
    `since` that second once upgraded, and the chain still verifies."""
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = make_engine(url)
    upgrade(engine, "0005")
    rt = Runtime.open(Settings(database_url=url, policy_dir=POLICIES))
    rt.decider.clock = lambda: T0
    rt.decider.check_batch([CheckRequest(f"u{i}", "view", f"C{i}") for i in range(3)])
    rt.close()
    with engine.begin() as conn:  # as the old bulk insert wrote them
        conn.execute(text("UPDATE decisions SET at = substr(at, 1, 19)"))
    assert audit.read(Database(engine), since=T0) == []

    upgrade(engine)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT DISTINCT at FROM decisions")).scalars().all()
    assert stored == ["2026-11-26 10:00:00.000000"]
    assert len(audit.read(Database(engine), since=T0)) == 3
    assert audit.verify(Database(engine)) == (3, [])
    engine.dispose()


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])))
def test_sqlite_stores_every_time_as_sqlalchemy_would(at: datetime) -> None:
    """UtcDateTime's own converter on SQLite writes exactly what SQLAlchemy's DATETIME does
    (the form `since` and the indexes compare)."""
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = sqlite.DATETIME().bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(at) == theirs(at.astimezone(UTC).replace(tzinfo=None))
