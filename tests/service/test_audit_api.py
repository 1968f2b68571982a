"""GET /v1/decisions (scope audit)."""

from __future__ import annotations

from flask.testing import FlaskClient

from authz.runtime import Runtime
from tests.conftest import T0


def test_the_log_over_http(client: FlaskClient, auth: dict, rt: Runtime) -> None:
    for contract_id in ("C1", "C2", "C3"):
        body = {"user_id": "u", "action": "view", "contract_id": contract_id}
        assert client.post("/v1/check", json=body, headers=auth).status_code == 200
    rt.log.flush()
    r = client.get("/v1/decisions?limit=2", headers=auth)
    assert r.status_code == 200
    first = r.json
    assert [d["input"]["contract_id"] for d in first["decisions"]] == ["C3", "C2"]
    d = first["decisions"][0]
    assert d["caller"] == "tester" and d["allowed"] is False
    assert d["reasons"] == ["USER_NOT_FOUND", "CONTRACT_NOT_FOUND"]
    assert set(d) >= {
        "decision_id",
        "at",
        "caller",
        "input",
        "allowed",
        "reasons",
        "policy_version",
        "data_version",
    }
    rest = client.get(
        "/v1/decisions", query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=auth
    ).json
    assert [x["input"]["contract_id"] for x in rest["decisions"]] == ["C1"]
    assert rest["next_cursor"] is None
    one = client.get("/v1/decisions?contract_id=C2", headers=auth).json["decisions"]
    assert [x["input"]["contract_id"] for x in one] == ["C2"]


def test_the_decision_id_answered_is_the_one_logged(
    client: FlaskClient, auth: dict, rt: Runtime
) -> None:
    body = {"user_id": "u", "action": "view", "contract_id": "C1"}
    answered = client.post("/v1/check", json=body, headers=auth).json["decision_id"]
    rt.log.flush()
    logged = client.get("/v1/decisions", headers=auth).json["decisions"][0]["decision_id"]
    assert logged == answered


def test_since_must_be_a_time_with_a_zone(client: FlaskClient, auth: dict) -> None:
    assert client.get("/v1/decisions?since=yesterday", headers=auth).status_code == 400
    assert client.get("/v1/decisions?since=2026-11-26T10:00:00", headers=auth).status_code == 400
    ok = client.get("/v1/decisions", query_string={"since": "2026-11-26T10:00:00Z"}, headers=auth)
    assert ok.status_code == 200


def test_the_log_needs_the_audit_scope(client: FlaskClient, rt: Runtime) -> None:
    key = rt.keys.create("decider", frozenset({"decide"}), T0)
    r = client.get("/v1/decisions", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403


def test_the_policy_in_service(client: FlaskClient, auth: dict, rt: Runtime) -> None:
    import hashlib

    from tests.conftest import POLICIES

    r = client.get("/v1/policy", headers=auth)
    assert r.status_code == 200
    body = r.json
    assert body["policy_version"] == rt.policy.version
    on_disk = (POLICIES / "contract_access.polar").read_bytes()
    assert body["files"] == [
        {
            "path": "contract_access.polar",
            "sha256": hashlib.sha256(on_disk).hexdigest(),
            "source": on_disk.decode(),
        }
    ]
    check = client.post(
        "/v1/check", json={"user_id": "u", "action": "view", "contract_id": "C"}, headers=auth
    ).json
    assert check["policy_version"] == body["policy_version"]
