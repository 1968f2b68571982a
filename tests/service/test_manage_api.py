"""Sites, users and links over HTTP (scope `manage`)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import World, contract


def test_put_site_creates_then_replaces(client: FlaskClient, auth: dict) -> None:
    r = client.put("/v1/sites/acme", json={"name": "Acme", "private_label": "ACME"}, headers=auth)
    assert r.status_code == 201
    assert r.json["payments_enabled"] is True  # the default
    r = client.put(
        "/v1/sites/acme",
        json={"name": "Acme Finance", "private_label": None, "payments_enabled": False},
        headers=auth,
    )
    assert r.status_code == 200
    sites = client.get("/v1/sites", headers=auth).json["sites"]
    assert [
        (s["site_id"], s["name"], s["private_label"], s["payments_enabled"]) for s in sites
    ] == [("acme", "Acme Finance", None, False)]


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "A", "payments_enabled": "yes"}, {"name": "A", "private_label": 1}],
)
def test_invalid_site_is_400_and_changes_nothing(
    client: FlaskClient, auth: dict, body: dict
) -> None:
    assert client.put("/v1/sites/s", json=body, headers=auth).status_code == 400
    assert client.get("/v1/sites", headers=auth).json["sites"] == []


def test_user_lifecycle(client: FlaskClient, auth: dict, world: World) -> None:
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    r = client.put(
        "/v1/users/u1",
        json={"site_id": "default", "email": "u1@example.com", "status": "active"},
        headers=auth,
    )
    assert r.status_code == 201
    assert (
        client.put(
            "/v1/users/u1",
            json={"site_id": "default", "email": "u1@example.com", "status": "disabled"},
            headers=auth,
        ).status_code
        == 200
    )
    link = client.post("/v1/users/u1/accounts", json={"account_id": "A1"}, headers=auth)
    assert link.status_code == 201
    again = client.post("/v1/users/u1/accounts", json={"account_id": "A1"}, headers=auth)
    assert again.status_code == 200
    assert again.json["data_version"] == link.json["data_version"]
    user = client.get("/v1/users/u1", headers=auth).json
    assert user["status"] == "disabled"
    assert [a["account_id"] for a in user["linked_accounts"]] == ["A1"]
    assert user["linked_accounts"][0]["name"] == "Account A1"
    assert client.delete("/v1/users/u1/accounts/A1", headers=auth).status_code == 204
    assert client.delete("/v1/users/u1/accounts/A1", headers=auth).status_code == 404
    assert client.get("/v1/users/u1", headers=auth).json["linked_accounts"] == []


def test_user_on_a_missing_site_is_422_site_not_found(client: FlaskClient, auth: dict) -> None:
    r = client.put(
        "/v1/users/u1", json={"site_id": "nowhere", "email": "u@example.com"}, headers=auth
    )
    assert r.status_code == 422
    assert r.json["code"] == "SITE_NOT_FOUND"
    assert client.get("/v1/users/u1", headers=auth).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"site_id": "default"},
        {"site_id": "default", "email": "not-an-email"},
        {"site_id": "default", "email": "u@example.com", "status": "gone"},
    ],
)
def test_invalid_user_is_400(client: FlaskClient, auth: dict, world: World, body: dict) -> None:
    world.site("default")
    assert client.put("/v1/users/u1", json=body, headers=auth).status_code == 400
    assert client.get("/v1/users/u1", headers=auth).status_code == 404


def test_refused_link_is_422_with_reasons(client: FlaskClient, auth: dict, world: World) -> None:
    world.site("default")
    world.sync([contract("C1", "A1:Vendor"), contract("C2", "A2:Customer", label="ACME")])
    world.user("u1", "default")
    cases = {
        "A1": "NO_ACTIVE_PARTY_ROLE",
        "A2": "PRIVATE_LABEL_MISMATCH",
        "A9": "ACCOUNT_NOT_FOUND",
    }
    for account, code in cases.items():
        r = client.post("/v1/users/u1/accounts", json={"account_id": account}, headers=auth)
        assert r.status_code == 422
        assert r.json["code"] == "ACCOUNT_NOT_ELIGIBLE"
        assert [x["code"] for x in r.json["reasons"]] == [code]
        assert r.json["reasons"][0]["message"]
    assert client.get("/v1/users/u1", headers=auth).json["linked_accounts"] == []


def test_management_of_a_missing_user_is_404(client: FlaskClient, auth: dict) -> None:
    assert client.get("/v1/users/ghost", headers=auth).status_code == 404
    r = client.post("/v1/users/ghost/accounts", json={"account_id": "A1"}, headers=auth)
    assert r.status_code == 404
    assert client.delete("/v1/users/ghost/accounts/A1", headers=auth).status_code == 404


def test_unlink_is_seen_by_the_next_check(client: FlaskClient, auth: dict, world: World) -> None:
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    world.user("u1", "default", "A1")
    body = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is True
    client.delete("/v1/users/u1/accounts/A1", headers=auth)
    assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is False


@pytest.mark.parametrize("site_id", ["x" * 129, "%20padded%20", "tab%09id"])
def test_invalid_id_in_the_path_is_400_and_changes_nothing(
    client: FlaskClient, auth: dict, site_id: str
) -> None:
    r = client.put(f"/v1/sites/{site_id}", json={"name": "S"}, headers=auth)
    assert r.status_code == 400
    assert r.json["errors"][0]["field"] == "site_id"
    assert client.get("/v1/sites", headers=auth).json["sites"] == []


def test_writes_carry_the_data_version_and_reads_do_not(client: FlaskClient, auth: dict) -> None:
    put = client.put("/v1/sites/s", json={"name": "S"}, headers=auth).json
    assert put["data_version"] == 1
    assert "data_version" not in client.get("/v1/sites", headers=auth).json["sites"][0]
