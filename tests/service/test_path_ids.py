"""Ids in the path are one segment each, percent-encoded: an id that holds '/' (ASPIRE's
account numbers may) or '%' is sent with them as %2F and %25, and means that id."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from service.paths import routed_path
from tests.conftest import World, contract


def q(value: str) -> str:
    return quote(value, safe="")


@pytest.mark.parametrize("account", ["ACC/2024/001", "100%", "50%2F", "A%2F1/x", "Ü/é"])
def test_an_account_whose_id_holds_a_slash_or_percent_is_unlinked_by_its_id(
    client: FlaskClient, auth: dict, world: World, account: str
) -> None:
    world.site("default")
    world.sync([contract("C1", f"{account}:Customer"), contract("C2", "OTHER:Customer")])
    world.user("u1", "default", "OTHER")
    linked = client.post("/v1/users/u1/accounts", json={"account_id": account}, headers=auth)
    assert linked.status_code == 201
    body = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is True

    r = client.delete(f"/v1/users/u1/accounts/{q(account)}", headers=auth)
    assert r.status_code == 204
    assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is False
    user = client.get("/v1/users/u1", headers=auth).json
    assert [a["account_id"] for a in user["linked_accounts"]] == ["OTHER"]
    assert client.delete(f"/v1/users/u1/accounts/{q(account)}", headers=auth).status_code == 404


@pytest.mark.parametrize("user", ["portal/42", "a%b", "x%2Fy"])
def test_a_user_and_a_site_whose_ids_hold_a_slash_or_percent(
    client: FlaskClient, auth: dict, world: World, user: str
) -> None:
    site = f"site/{user}"
    assert client.put(f"/v1/sites/{q(site)}", json={"name": "S"}, headers=auth).status_code == 201
    world.sync([contract("C1", "A1:Customer")])
    r = client.put(
        f"/v1/users/{q(user)}", json={"site_id": site, "email": "u@example.com"}, headers=auth
    )
    assert r.status_code == 201
    assert r.json["user_id"] == user
    assert client.get(f"/v1/users/{q(user)}", headers=auth).json["site_id"] == site
    linked = client.post(f"/v1/users/{q(user)}/accounts", json={"account_id": "A1"}, headers=auth)
    assert linked.status_code == 201
    listed = client.get(f"/v1/users/{q(user)}/contracts", headers=auth).json
    assert [c["contract_id"] for c in listed["contracts"]] == ["C1"]
    eligible = client.get(f"/v1/sites/{q(site)}/eligible-accounts?q=A1", headers=auth)
    assert eligible.status_code == 200
    assert client.delete(f"/v1/users/{q(user)}/accounts/A1", headers=auth).status_code == 204
    assert client.get(f"/v1/users/{q(user)}/contracts", headers=auth).json["contracts"] == []


def test_a_slash_between_segments_is_still_a_separator(client: FlaskClient, auth: dict) -> None:
    """'/v1/users/u1/accounts/A/1' is no route: the id of an account is one segment."""
    r = client.delete("/v1/users/u1/accounts/A/1", headers=auth)
    assert r.status_code == 404


def test_an_escaped_slash_is_checked_as_an_id_like_any_other(
    client: FlaskClient, auth: dict
) -> None:
    r = client.put(f"/v1/sites/{q('x' * 120 + '/' + 'y' * 8)}", json={"name": "S"}, headers=auth)
    assert r.status_code == 400
    assert r.json["errors"][0]["field"] == "site_id"


@pytest.mark.parametrize(
    ("environ", "routed"),
    [
        # as gunicorn gives it: PATH_INFO decoded whole, RAW_URI as sent
        ({"PATH_INFO": "/a/b/c", "RAW_URI": "/a/b%2Fc?x=%2F"}, "/a/b%2Fc"),
        ({"PATH_INFO": "/a/100%", "RAW_URI": "/a/100%25"}, "/a/100%25"),
        ({"PATH_INFO": "/a/\xc3\x9c/", "RAW_URI": "/a/%C3%9C%2F"}, "/a/\xc3\x9c%2F"),
        ({"PATH_INFO": "/a/b", "RAW_URI": "/a/b"}, "/a/b"),
        ({"PATH_INFO": "/a/b/c", "RAW_URI": "http://host:80/a/b%2Fc"}, "/a/b%2Fc"),
        ({"PATH_INFO": "/a/b/c", "REQUEST_URI": "/a/b%2Fc"}, "/a/b%2Fc"),
        ({"PATH_INFO": "/a/b/c", "RAW_URI": "/app/a/b%2Fc", "SCRIPT_NAME": "/app"}, "/a/b%2Fc"),
        # not known as sent, or sent otherwise than decoded: its '/' are separators
        ({"PATH_INFO": "/a/b/100%"}, "/a/b/100%25"),
        ({"PATH_INFO": "/a/b/c", "RAW_URI": "/other%2Fpath"}, "/a/b/c"),
    ],
)
def test_the_path_routed(environ: dict, routed: str) -> None:
    assert routed_path(environ) == routed
