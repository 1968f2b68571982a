"""Callers: bearer keys with scopes; 401 without a known key, 403 without the scope."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from authz.runtime import Runtime
from tests.conftest import T0

CHECK = {"user_id": "u", "action": "view", "contract_id": "C1"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Basic abc", "Bearer azk_nope_nope", "Bearer x"]
)
def test_missing_or_unknown_key_is_401(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    r = client.post("/v1/check", json=CHECK, headers=headers)
    assert r.status_code == 401
    assert r.content_type == "application/problem+json"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("scope", "method", "path", "body"),
    [
        ("manage", "post", "/v1/check", CHECK),
        ("decide", "put", "/v1/sites/s1", {"name": "S"}),
        ("decide", "post", "/v1/aspire/batches", {}),
        ("sync", "get", "/v1/sites", None),
        ("audit", "post", "/v1/explain", CHECK),
    ],
)
def test_key_without_the_scope_is_403(
    client: FlaskClient, rt: Runtime, scope: str, method: str, path: str, body: dict | None
) -> None:
    key = rt.keys.create(f"only-{scope}", frozenset({scope}), T0)
    r = getattr(client, method)(path, json=body, headers=bearer(key))
    assert r.status_code == 403
    assert r.json["code"] == "FORBIDDEN"


def test_status_takes_a_key_of_any_scope(client: FlaskClient, rt: Runtime) -> None:
    key = rt.keys.create("auditor", frozenset({"audit"}), T0)
    assert client.get("/v1/aspire/status", headers=bearer(key)).status_code == 200
    assert client.get("/v1/aspire/status").status_code == 401


def test_revoked_key_is_401(client: FlaskClient, rt: Runtime) -> None:
    key = rt.keys.create("old", frozenset({"decide"}), T0)
    assert client.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 200
    rt.keys.revoke("old", T0)
    assert client.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 401


def test_a_key_with_a_wrong_secret_is_401(client: FlaskClient, rt: Runtime) -> None:
    key = rt.keys.create("k", frozenset({"decide"}), T0)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert client.post("/v1/check", json=CHECK, headers=bearer(forged)).status_code == 401


def test_keys_are_stored_hashed(rt: Runtime) -> None:
    from sqlalchemy import select

    from authz.models import ApiKey

    key = rt.keys.create("k", frozenset({"decide"}), T0)
    with rt.db.read() as s:
        stored = s.scalars(select(ApiKey.secret_hash)).all()
    assert stored and all(key.split("_", 2)[2] not in h for h in stored)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_operations_need_no_key(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_time(
    client: FlaskClient, rt: Runtime
) -> None:
    from authz.keys import Keys

    key = rt.keys.create("elsewhere", frozenset({"decide"}), T0)
    rt.keys.cache_seconds = 0.2
    assert client.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 200
    Keys(rt.db).revoke("elsewhere", T0)  # as the CLI or another worker would
    import time

    time.sleep(0.25)
    assert client.post("/v1/check", json=CHECK, headers=bearer(key)).status_code == 401
