"""Faults while deciding: each answers a deny or a 503, never an allow, and the service
recovers by itself when the fault ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask.testing import FlaskClient
from polar.exceptions import PolarRuntimeError
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from authz.runtime import Runtime
from tests.conftest import World, contract

BODY = {"user_id": "u1", "action": "view", "contract_id": "C1"}


@pytest.fixture
def allowed_world(world: World) -> World:
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    world.user("u1", "default", "A1")
    return world


@contextmanager
def store_fails_after(rt: Runtime, statements: int) -> Iterator[None]:
    """The read store answers `statements` statements, then every later one fails."""
    seen = {"n": 0}

    def fail(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        seen["n"] += 1
        if seen["n"] > statements:
            raise OperationalError(statement, {}, Exception("server closed the connection"))

    event.listen(rt.db.read_engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(rt.db.read_engine, "before_cursor_execute", fail)


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_the_store_failing_mid_decision_is_a_503_then_recovers(
    client: FlaskClient, auth: dict, rt: Runtime, allowed_world: World, after: int
) -> None:
    assert client.post("/v1/check", json=BODY, headers=auth).json["allowed"] is True
    with store_fails_after(rt, after):
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


def test_the_lists_fail_closed_too(
    client: FlaskClient, auth: dict, rt: Runtime, allowed_world: World
) -> None:
    with store_fails_after(rt, 1):
        r = client.get("/v1/users/u1/contracts", headers=auth)
        assert r.status_code == 503 and "contracts" not in r.json
    assert [
        c["contract_id"]
        for c in client.get("/v1/users/u1/contracts", headers=auth).json["contracts"]
    ] == ["C1"]
