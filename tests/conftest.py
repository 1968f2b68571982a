"""Shared fixtures: a fresh store on SQLite and PostgreSQL, the runtime, the app, a world."""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from authz.config import ROOT, Settings
from authz.db import Database, make_engine
from authz.models import Base
from authz.replica import BatchIn
from authz.runtime import Runtime
from authz.schema import head, seed, upgrade
from service import create_app

PG_URL = os.environ.get("AUTHZ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POLICIES = ROOT / "policies"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _pg_reachable() -> str | None:
    try:
        engine = make_engine(PG_URL, pool_pre_ping=False)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except OperationalError as exc:  # the server does not answer
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A private schema in the test database, migrated once; dropped at the end."""
    problem = _pg_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {PG_URL} does not answer: {problem}")
        pytest.skip(f"PostgreSQL at {PG_URL} does not answer ({problem})")  # allowed outside CI
    schema = f"authz_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated once, for each test to copy: migrating afresh took 56-98 ms."""
    path = tmp_path_factory.mktemp("template") / "authz.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    return emptied(request.getfixturevalue("pg_schema_url"))


def sqlite_copy(template: Path, directory: Path) -> str:
    """A fresh SQLite store in `directory`: a copy of `template`, closed and so whole in its
    main file (SQLite folds the write-ahead log into it as the last connection closes)."""
    if template.with_name(template.name + "-wal").exists():
        raise RuntimeError(f"{template} is still open")
    path = directory / "authz.sqlite3"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# Every table emptied, children before parents, and every sequence started again: DELETE
# rather than TRUNCATE, which took 43-69 ms per test where these take about 3.
_EMPTY = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables))
_RESTART = """DO $$ DECLARE s record; BEGIN
  FOR s IN SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() LOOP
    EXECUTE 'ALTER SEQUENCE ' || quote_ident(s.sequencename) || ' RESTART';
  END LOOP;
END $$"""


@functools.cache
def _engine(url: str) -> Engine:
    return make_engine(url)


def emptied(url: str) -> str:
    """The PostgreSQL store at `url`, the schema current and every table emptied."""
    engine = _engine(url)
    with engine.connect() as conn:
        at = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if at != head():  # a test left it elsewhere
        upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(_EMPTY)
        conn.exec_driver_sql(_RESTART)
        seed(conn)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # A journal of the test's own: the PostgreSQL tests share one store, emptied between
    # tests, and must not write each other's leftover entries into it.
    return Settings(database_url=database_url, policy_dir=POLICIES, journal_dir=tmp_path / "j")


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.open(
        settings, Database.from_url(settings.database_url, settings.read_timeout_ms)
    )
    yield runtime
    runtime.close()


@pytest.fixture
def app(rt: Runtime) -> Flask:
    return create_app({"RUNTIME": rt, "TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def key(rt: Runtime) -> str:
    """A key with every scope."""
    return rt.keys.create("tester", frozenset({"decide", "manage", "sync", "audit"}), T0)


@pytest.fixture
def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class World:
    """Builds data through the library's public paths (sync, sites, users, links)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.batches = 0

    def site(self, site_id: str, label: str | None = None, payments: bool = True) -> None:
        self.rt.directory.put_site(site_id, site_id.title(), label, payments, T0)

    def sync(
        self,
        contracts: list[dict[str, Any]],
        accounts: list[str] | None = None,
        at: datetime | None = None,
        **extra: Any,
    ) -> Any:
        self.batches += 1
        names = (
            accounts
            if accounts is not None
            else sorted({p["account_id"] for c in contracts for p in c.get("parties", [])})
        )
        body = {
            "source": self.rt.settings.aspire_source,
            "batch_id": f"test#{self.batches}",
            "extracted_at": (at or T0 + timedelta(seconds=self.batches)).isoformat(),
            "accounts": [{"account_id": a, "name": f"Account {a}"} for a in names],
            "contracts": contracts,
            **extra,
        }
        return self.rt.replica.apply(BatchIn.model_validate(body), T0)

    def user(self, user_id: str, site_id: str, *accounts: str, status: str = "active") -> None:
        self.rt.directory.put_user(user_id, site_id, f"{user_id}@example.com", status, T0)
        for a in accounts:
            self.rt.directory.link(user_id, a, T0)


def contract(
    contract_id: str, *parties: str, state: str = "active", label: str | None = None
) -> dict[str, Any]:
    """A contract record; parties as "ACCOUNT:Role", e.g. contract("C1", "A1:Customer")."""
    return {
        "contract_id": contract_id,
        "private_label": label,
        "state": state,
        "booked_at": None if state == "pending" else T0.isoformat(),
        "parties": [
            {"account_id": a, "role_type": r} for a, r in (p.split(":", 1) for p in parties)
        ],
    }


@pytest.fixture
def world(rt: Runtime) -> World:
    return World(rt)


def log_refusing_writes(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, max_backlog: int, max_wait: float
) -> None:
    """The decision log of `rt` with its writes failing, `max_backlog` and `max_wait` set,
    and no background writer (its failing tries would make room for a moment) until
    `monkeypatch.undo()`; `rt.log.flush()` then writes what waits."""

    def down(entries: object) -> None:
        raise RuntimeError("the store refuses writes")

    rt.log.close()
    monkeypatch.setattr(rt.log, "_write", down)
    monkeypatch.setattr(rt.log, "max_backlog", max_backlog)
    monkeypatch.setattr(rt.log, "max_wait", max_wait)
