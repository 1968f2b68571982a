"""Faults while deciding: each answers a deny or a 503, never an allow, and the service
recovers by itself when the fault ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from polar.exceptions import PolarRuntimeError
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from authz import db as db_module
from authz.config import Settings
from authz.runtime import Runtime
from authz.state import bump_data_version
from service import create_app
from tests.conftest import World, contract, log_refusing_writes

BODY = {"user_id": "u1", "action": "view", "contract_id": "C1"}


@pytest.fixture
def allowed_world(world: World) -> World:
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    world.user("u1", "default", "A1")
    return world


@contextmanager
def store_fails_after(rt: Runtime, statements: int) -> Iterator[None]:
    """The read store answers `statements` statements, then every later one fails. The
    decider's version probe counts too: its connection is closed under it. On PostgreSQL
    the version watch's connection fails with the store: its version is not trusted."""
    seen = {"n": 0}
    probe = rt.decider._probe
    probe_read = probe._read

    def fail(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        seen["n"] += 1
        if seen["n"] > statements:
            raise OperationalError(statement, {}, Exception("server closed the connection"))

    def fail_probe(dbapi_conn, *how):  # type: ignore[no-untyped-def]
        seen["n"] += 1
        if seen["n"] > statements:
            dbapi_conn.close()
        return probe_read(dbapi_conn, *how)

    engines = rt.db.read_engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", fail)
    probe._read = fail_probe  # type: ignore[method-assign]
    rt.decider.known_version = lambda: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", fail)
        del probe._read
        del rt.decider.known_version


def test_the_store_failing_mid_decision_is_a_503_then_recovers(
    client: FlaskClient, auth: dict, rt: Runtime, allowed_world: World
) -> None:
    """A decision reads its facts in one statement: it fails whole or not at all. Facts
    remembered from the first check answer nothing once the store cannot say its version."""
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    with store_fails_after(rt, 0):
        r = client.post("/v1/check", json=BODY, headers=auth)
        assert r.status_code == 503
        assert r.content_type == "application/problem+json" and "allowed" not in r.json
        batch = client.post("/v1/check/batch", json={"checks": [BODY]}, headers=auth)
        assert batch.status_code == 503 and "results" not in batch.json
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True


def test_a_policy_that_raises_is_a_deny(
    client: FlaskClient,
    auth: dict,
    rt: Runtime,
    allowed_world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> bool:
        raise PolarRuntimeError("the policy raised")

    monkeypatch.setattr(rt.policy._oso, "is_allowed", broken)
    r = client.post("/v1/check", json=BODY, headers=auth)
    assert r.status_code == 200 and r.json["allowed"] is False
    e = client.post("/v1/explain", json=BODY, headers=auth)
    assert e.status_code == 200 and e.json["allowed"] is False
    monkeypatch.undo()
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True


@pytest.mark.parametrize("after", [0, 1])
def test_the_lists_fail_closed_too(
    client: FlaskClient, auth: dict, rt: Runtime, allowed_world: World, after: int
) -> None:
    """A list reads in two statements; the store failing before either is a 503."""
    with store_fails_after(rt, after):
        r = client.get("/v1/users/u1/contracts", headers=auth)
        assert r.status_code == 503 and "contracts" not in r.json
    assert [
        c["contract_id"]
        for c in client.get("/v1/users/u1/contracts", headers=auth).json["contracts"]
    ] == ["C1"]


@pytest.fixture
def slow_reads(settings: Settings) -> Iterator[Runtime]:
    """A runtime whose reads give up after 300 ms."""
    runtime = Runtime.open(replace(settings, read_timeout_ms=300))
    yield runtime
    runtime.close()


def test_a_read_past_its_timeout_is_a_503_then_recovers(
    slow_reads: Runtime, auth: dict, allowed_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = create_app({"RUNTIME": slow_reads, "TESTING": True}).test_client()
    page = {"user_id": "u1"}
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    if slow_reads.db.is_sqlite:
        # Every look at the clock while a statement runs finds it 1 s later; the world is
        # big enough for SQLite to look (every 1,000 steps of its virtual machine).
        allowed_world.sync([contract(f"F{i:05d}", "A1:Customer") for i in range(3000)])
        clock = iter(range(10**9))
        monkeypatch.setattr(db_module.time, "monotonic", lambda: float(next(clock)))
        hold = None
    else:
        # A migration holding a lock on the contracts: reads wait, then time out.
        hold = slow_reads.db.engine.connect()
        hold.begin()
        hold.execute(text("LOCK TABLE contracts IN ACCESS EXCLUSIVE MODE"))
    try:
        started = time.monotonic() if hold is not None else 0.0
        r = client.get(f"/v1/users/{page['user_id']}/contracts", headers=auth)
        assert r.status_code == 503 and "contracts" not in r.json
        if hold is not None:  # SQLite: a check's few index lookups never run long
            # Through a site: facts not read before, so the contracts must be read.
            c = client.post("/v1/check", json=BODY | {"site_id": "default"}, headers=auth)
            assert c.status_code == 503 and "allowed" not in c.json
            assert time.monotonic() - started < 5  # gave up; did not wait for the lock
            # Facts read at the store's version still answer: the lock changed nothing yet.
            assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    finally:
        monkeypatch.undo()
        if hold is not None:
            hold.rollback()
            hold.close()
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    assert client.get("/v1/users/u1/contracts", headers=auth).status_code == 200


# Whatever writes the replica counts the change as syncs do (and on PostgreSQL answers once
# every deciding process knows of it): facts are remembered per version.
def write_replica(rt: Runtime, *statements: Any, **params: Any) -> None:
    with rt.db.write() as session:
        for statement in statements:
            session.execute(statement, params)
        bump_data_version(session)


MALFORMED = {
    "role type in another case": "UPDATE contract_parties SET role_type = 'customer'",
    "an empty label, not none": "UPDATE contracts SET private_label = ''",
    "a contract of another source": "UPDATE contracts SET source = 'aspire-test'",
    "a label with a trailing blank": "UPDATE contracts SET private_label = 'PL '",
}


@pytest.mark.parametrize("fault", MALFORMED)
def test_a_malformed_replica_row_is_a_deny_never_an_error_or_allow(
    client: FlaskClient, auth: dict, rt: Runtime, allowed_world: World, fault: str
) -> None:
    _malformed_row_is_denied(client, auth, rt, MALFORMED[fault])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_label_of_another_type_is_a_deny(
    client: FlaskClient, auth: dict, rt: Runtime, allowed_world: World
) -> None:
    # SQLite stores what it is given whatever the column's type; PostgreSQL would refuse it.
    _malformed_row_is_denied(client, auth, rt, "UPDATE contracts SET private_label = 42")


def _malformed_row_is_denied(client: FlaskClient, auth: dict, rt: Runtime, fault: str) -> None:
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    with rt.db.engine.begin() as conn:
        snapshot = conn.execute(text("SELECT * FROM contracts")).all()
    write_replica(rt, text(fault))
    check = client.post("/v1/check", json=BODY, headers=auth)
    assert check.status_code == 200 and check.json["allowed"] is False
    batch = client.post("/v1/check/batch", json={"checks": [BODY]}, headers=auth)
    assert batch.status_code == 200 and batch.json["results"][0]["allowed"] is False
    explain = client.post("/v1/explain", json=BODY, headers=auth)
    assert explain.status_code == 200 and explain.json["allowed"] is False
    assert explain.json["reasons"]
    listed = client.get("/v1/users/u1/contracts", headers=auth)
    assert listed.status_code == 200 and listed.json["contracts"] == []
    write_replica(  # the next sync repairs the row
        rt,
        text("UPDATE contract_parties SET role_type = 'Customer'"),
        text("UPDATE contracts SET private_label = :l, source = :s"),
        l=snapshot[0].private_label,
        s=snapshot[0].source,
    )
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True


def test_a_decision_log_that_cannot_take_more_is_a_503(
    client: FlaskClient,
    auth: dict,
    rt: Runtime,
    allowed_world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decision that cannot be recorded is not answered: problem+json 503, never a result."""
    log_refusing_writes(rt, monkeypatch, max_backlog=1, max_wait=0.1)
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    r = client.post("/v1/check", json=BODY, headers=auth)
    assert r.status_code == 503 and r.content_type == "application/problem+json"
    assert "allowed" not in r.json and "decision log is behind" in r.json["detail"]
    batch = client.post("/v1/check/batch", json={"checks": [BODY]}, headers=auth)
    assert batch.status_code == 503 and "results" not in batch.json
    monkeypatch.undo()
    rt.log.flush()
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
