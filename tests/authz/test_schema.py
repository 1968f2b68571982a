"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex

from authz import audit
from authz.config import Settings
from authz.db import Database, make_engine
from authz.decisions import CheckRequest
from authz.models import Base, UtcDateTime
from authz.runtime import Runtime
from authz.schema import downgrade, upgrade
from tests.conftest import PG_URL, POLICIES, T0, World, contract


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            # SQLAlchemy does not reflect SQLite's indexes on expressions: compared below.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expr")
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if engine.dialect.name == "sqlite":
                stored = dict(
                    conn.execute(
                        text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
                    ).all()
                )
                for index in Base.metadata.tables["decisions"].indexes:
                    made = str(CreateIndex(index).compile(dialect=engine.dialect))
                    assert _words(stored[index.name]) == _words(made)
    finally:
        engine.dispose()
    assert diff == []


def _words(sql: str) -> str:
    """The statement without quotes, parentheses and spacing, which do not change it here."""
    return "".join(c for c in sql if c not in '"() ')


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


def _replica(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return (
            list(conn.execute(text("SELECT * FROM contract_parties ORDER BY 1, 2, 3"))),
            list(conn.execute(text("SELECT * FROM account_terms ORDER BY 1, 2"))),
        )


def _foreign_keys(engine: Engine) -> dict[str, list[str]]:
    names = ("contract_parties", "account_terms")
    return {
        t: sorted(fk["referred_table"] for fk in inspect(engine).get_foreign_keys(t)) for t in names
    }


@pytest.fixture
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store with no schema at all: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.sqlite3"
        return
    request.getfixturevalue("pg_schema_url")  # PostgreSQL answers (else a failure in CI)
    schema = f"authz_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.mark.parametrize("fresh_url", ["sqlite", "postgresql"], indirect=True)
def test_0008_drops_the_replica_foreign_keys_and_keeps_every_row(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    upgrade(engine, "0007")
    with Runtime.open(Settings(database_url=fresh_url, policy_dir=POLICIES)) as rt:
        World(rt).sync([contract("C1", "A1:Customer", "A2:Guarantor"), contract("C2", "A2:Lessee")])
    before = _replica(engine)
    assert len(before[0]) == 3 and before[1]
    assert _foreign_keys(engine) == {
        "contract_parties": ["accounts", "contracts"],
        "account_terms": ["accounts"],
    }

    upgrade(engine)
    assert _replica(engine) == before
    assert _foreign_keys(engine) == {"contract_parties": [], "account_terms": []}

    downgrade(engine, "0007")
    assert _replica(engine) == before
    assert _foreign_keys(engine)["contract_parties"] == ["accounts", "contracts"]
    engine.dispose()


def _decision_indexes(engine: Engine) -> dict[str, str]:
    """The definitions of the decision log's user and contract indexes, as the engine
    keeps them."""
    query = (
        "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'decisions'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'decisions'"
    )
    with engine.connect() as conn:
        found = dict(conn.execute(text(query)).all())
    return {n: _words(found[n]) for n in ("ix_decisions_user", "ix_decisions_contract")}


def _two_entries_at(fresh_url: str, revision: str) -> tuple[Engine, list[tuple[object, ...]]]:
    """A store at `revision` holding two decisions of user u1 and u2 on contract C1."""
    engine = make_engine(fresh_url)
    upgrade(engine, revision)
    settings = Settings(database_url=fresh_url, policy_dir=POLICIES)
    with Runtime.open(settings) as rt:
        World(rt).sync([contract("C1", "A1:Customer")])
        rt.decider.check_batch([CheckRequest("u1", "view", "C1"), CheckRequest("u2", "view", "C1")])
        rt.log.flush()
    entries = _decision_rows(engine)
    assert len(entries) == 2
    return engine, entries


def _read_back(fresh_url: str, entries: list[tuple[object, ...]]) -> None:
    """Reads by user and by contract find the two entries, and the chain verifies."""
    db = Database.from_url(fresh_url)
    assert [r.seq for r in audit.read(db, user_id="u2")] == [entries[1][0]]
    assert [r.seq for r in audit.read(db, contract_id="C1")] == [entries[1][0], entries[0][0]]
    assert audit.verify(db) == (2, [])
    db.dispose()


@pytest.mark.parametrize("fresh_url", ["sqlite", "postgresql"], indirect=True)
def test_0009_orders_the_decision_indexes_by_bucket_and_keeps_every_entry(fresh_url: str) -> None:
    engine, entries = _two_entries_at(fresh_url, "0008")
    assert all("seq>>16" not in d for d in _decision_indexes(engine).values())

    upgrade(engine, "0009")
    indexes = _decision_indexes(engine)
    assert "seq>>16,user_id,seq" in indexes["ix_decisions_user"]
    assert "seq>>16,contract_id,seq" in indexes["ix_decisions_contract"]
    assert _decision_rows(engine) == entries
    _read_back(fresh_url, entries)

    downgrade(engine, "0008")
    assert all("seq>>16" not in d for d in _decision_indexes(engine).values())
    assert _decision_rows(engine) == entries
    engine.dispose()


@pytest.mark.parametrize("fresh_url", ["sqlite", "postgresql"], indirect=True)
def test_0010_makes_the_decision_index_buckets_smaller_and_keeps_every_entry(
    fresh_url: str,
) -> None:
    engine, entries = _two_entries_at(fresh_url, "0009")
    assert "seq>>16,user_id,seq" in _decision_indexes(engine)["ix_decisions_user"]

    upgrade(engine)
    indexes = _decision_indexes(engine)
    assert "seq>>14,user_id,seq" in indexes["ix_decisions_user"]
    assert "seq>>14,contract_id,seq" in indexes["ix_decisions_contract"]
    assert _decision_rows(engine) == entries
    _read_back(fresh_url, entries)

    downgrade(engine, "0009")
    indexes = _decision_indexes(engine)
    assert "seq>>16,user_id,seq" in indexes["ix_decisions_user"]
    assert "seq>>16,contract_id,seq" in indexes["ix_decisions_contract"]
    assert _decision_rows(engine) == entries
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
