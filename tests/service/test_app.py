"""The app factory, operations endpoints and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authz.enums import Action
from authz.errors import PolicyLoadError
from authz.runtime import Runtime
from service import create_app
from tests.conftest import World, contract


def test_factory_uses_the_given_runtime(rt: Runtime) -> None:
    app = create_app({"RUNTIME": rt, "TESTING": True})
    assert isinstance(app, Flask) and app.testing
    assert app.extensions["authz"] is rt


def test_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    app = create_app()
    assert app.extensions["authz"].settings.database_url.endswith("env.sqlite3")
    app.extensions["authz"].db.dispose()


def test_a_policy_that_fails_to_load_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bad.polar").write_text("allow(")
    monkeypatch.setenv("AUTHZ_POLICY_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.sqlite3")
    with pytest.raises(PolicyLoadError):
        create_app()


def test_readyz_is_503_when_the_database_does_not_answer(rt: Runtime, tmp_path: Path) -> None:
    from dataclasses import replace

    from authz.db import Database

    dead = replace(rt, db=Database.from_url("postgresql://nobody@127.0.0.1:1/none"))
    client = create_app({"RUNTIME": dead}).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.content_type == "application/problem+json"
    assert client.get("/healthz").status_code == 200


def test_a_store_that_cannot_be_reached_is_503_never_an_allow(rt: Runtime, auth: dict) -> None:
    from dataclasses import replace

    from authz.db import Database
    from authz.decisions import Decider

    dead_db = Database.from_url("postgresql://nobody@127.0.0.1:1/none")
    dead = replace(rt, decider=Decider(dead_db, rt.policy, rt.settings))
    client = create_app({"RUNTIME": dead}).test_client()
    try:
        r = client.post(
            "/v1/check", json={"user_id": "u", "action": "view", "contract_id": "C"}, headers=auth
        )
    finally:
        dead.decider.close()  # its version watch would go on retrying the dead store
        dead_db.dispose()
    assert r.status_code == 503
    assert "allowed" not in r.json


def test_unknown_route_and_method_are_problems(client: FlaskClient, auth: dict) -> None:
    r = client.get("/v1/nothing", headers=auth)
    assert r.status_code == 404 and r.content_type == "application/problem+json"
    r = client.get("/v1/check", headers=auth)
    assert r.status_code == 405 and r.content_type == "application/problem+json"


def test_openapi_documents_every_v1_route(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/v1/check", "post"),
        ("/v1/check/batch", "post"),
        ("/v1/explain", "post"),
        ("/v1/sites/{site_id}", "put"),
        ("/v1/sites", "get"),
        ("/v1/users/{user_id}", "put"),
        ("/v1/users/{user_id}/accounts", "post"),
        ("/v1/users/{user_id}/accounts/{account_id}", "delete"),
        ("/v1/aspire/batches", "post"),
        ("/v1/aspire/status", "get"),
    ]:
        assert method in paths[path], (path, method)
    action = doc["components"]["schemas"]["CheckIn"]["properties"]["action"]
    assert action["enum"] == [a.value for a in Action]


def test_metrics_count_decisions(client: FlaskClient, auth: dict) -> None:
    def counted(endpoint: str, action: str) -> float:
        line = f'authz_decisions_total{{action="{action}",allowed="false",endpoint="{endpoint}"}}'
        r = client.get("/metrics")
        assert r.status_code == 200 and r.mimetype == "text/plain"
        found = [x for x in r.text.splitlines() if x.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = counted("check", "view")
    body = {"user_id": "u", "action": "view", "contract_id": "C"}
    client.post("/v1/check", json=body, headers=auth)
    assert counted("check", "view") == before + 1
    # A batch counts every decision, by its action and answer.
    views, payments = counted("batch", "view"), counted("batch", "make_payment")
    checks = [body] * 3 + [{**body, "action": "make_payment"}] * 2
    assert client.post("/v1/check/batch", json={"checks": checks}, headers=auth).status_code == 200
    assert counted("batch", "view") == views + 3
    assert counted("batch", "make_payment") == payments + 2


def test_request_ids_are_echoed_or_made(client: FlaskClient, auth: dict) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "portal-abc-123"})
    assert given.headers["X-Request-Id"] == "portal-abc-123"
    made = client.get("/healthz").headers["X-Request-Id"]
    assert len(made) == 32 and made != client.get("/healthz").headers["X-Request-Id"]
    hostile = client.get("/healthz", headers={"X-Request-Id": "x" * 500})
    assert hostile.headers["X-Request-Id"] != "x" * 500
    problem = client.post("/v1/check", json={}, headers={**auth, "X-Request-Id": "r-9"})
    assert problem.status_code == 400 and problem.headers["X-Request-Id"] == "r-9"


def _samples(client: FlaskClient) -> dict[str, float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    pairs = (x.rsplit(" ", 1) for x in r.text.splitlines() if x and not x.startswith("#"))
    return {name: float(value) for name, value in pairs}


def test_metrics_time_answers_by_route_and_read_the_store(
    client: FlaskClient, auth: dict, world: World
) -> None:
    count = 'authz_request_duration_seconds_count{route="/v1/check"}'
    before = _samples(client).get(count, 0.0)
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    body = {"user_id": "u", "action": "view", "contract_id": "C1"}
    client.post("/v1/check", json=body, headers=auth)
    client.post("/v1/check", json=body, headers=auth)
    seen = _samples(client)
    assert seen[count] == before + 2
    assert seen['authz_request_duration_seconds_bucket{le="1.0",route="/v1/check"}'] == before + 2
    status = client.get("/v1/aspire/status", headers=auth).json
    assert seen["authz_data_version"] == status["data_version"]
    assert seen["authz_replica_age_seconds"] >= 0
    assert seen["authz_store_up"] == 1
    assert any(k.startswith("authz_policy_info{") for k in seen)


class _Untouchable:
    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"read {name}")


def test_gunicorns_text_access_log_builds_nothing() -> None:
    """Our logging is configured by a dict, which gunicorn's own logger takes for an access
    log: it builds each answer's fields, for a `gunicorn.access` logger that drops them."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from service.logs import GunicornLogger, config

    cfg = Config()
    cfg.set("logconfig_dict", config())
    with pytest.raises(AssertionError, match="read"):
        Logger(cfg).access(_Untouchable(), _Untouchable(), {}, None)
    ours = GunicornLogger(cfg)
    ours.access(_Untouchable(), _Untouchable(), {}, None)
    assert ours.access_log_enabled is False
