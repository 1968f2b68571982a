"""GET /v1/users/{user_id}/contracts and GET /v1/sites/{site_id}/eligible-accounts."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from authz.replica import BatchIn
from tests.conftest import World, contract


@pytest.fixture
def seeded(world: World) -> World:
    world.site("default")
    world.site("acme", "ACME")
    world.sync(
        [
            contract("C1", "A1:Customer", "A2:Guarantor"),
            contract("C2", "A1:Customer", state="closed"),
            contract("C3", "A1:Customer", state="pending"),
            contract("C4", "A1:Vendor", "A2:Customer"),
            contract("C5", "A1:Customer", label="ACME"),
            contract("C6", "A3:Customer", label="ACME"),
        ],
        accounts=["A1", "A2", "A3"],
    )
    world.user("u1", "default", "A1", "A2")
    return world


def ids(body: dict, key: str = "contracts", field: str = "contract_id") -> list[str]:
    return [x[field] for x in body[key]]


def test_a_users_contracts_with_roles(client: FlaskClient, auth: dict, seeded: World) -> None:
    r = client.get("/v1/users/u1/contracts", headers=auth)
    assert r.status_code == 200
    body = r.json
    assert body["next_cursor"] is None
    assert body["contracts"] == [
        {
            "contract_id": "C1",
            "state": "active",
            "private_label": None,
            "roles": ["Customer", "Guarantor"],
        },
        {"contract_id": "C2", "state": "closed", "private_label": None, "roles": ["Customer"]},
        {
            "contract_id": "C4",
            "state": "active",
            "private_label": None,
            "roles": ["Customer", "Vendor"],
        },
    ]


def test_action_and_state_narrow_the_list(client: FlaskClient, auth: dict, seeded: World) -> None:
    pay = client.get("/v1/users/u1/contracts?action=make_payment", headers=auth).json
    assert ids(pay) == ["C1", "C4"]
    closed = client.get("/v1/users/u1/contracts?state=closed", headers=auth).json
    assert ids(closed) == ["C2"]
    active = client.get("/v1/users/u1/contracts?state=active", headers=auth).json
    assert ids(active) == ["C1", "C4"]


def test_pages_follow_the_cursor_without_repeats(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    first = client.get("/v1/users/u1/contracts?limit=2", headers=auth).json
    assert ids(first) == ["C1", "C2"] and first["next_cursor"]
    second = client.get(
        "/v1/users/u1/contracts",
        query_string={"limit": 2, "cursor": first["next_cursor"]},
        headers=auth,
    ).json
    assert ids(second) == ["C4"] and second["next_cursor"] is None


def test_a_cursor_survives_a_concurrent_sync(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    first = client.get("/v1/users/u1/contracts?limit=2", headers=auth).json
    seeded.sync([contract("C0", "A1:Customer"), contract("C3", "A1:Customer")], accounts=[])
    rest = client.get(
        "/v1/users/u1/contracts",
        query_string={"limit": 10, "cursor": first["next_cursor"]},
        headers=auth,
    ).json
    assert ids(rest) == ["C3", "C4"]  # C3 was booked meanwhile; nothing repeated or skipped


def test_an_unknown_user_has_an_empty_list(client: FlaskClient, auth: dict, seeded: World) -> None:
    r = client.get("/v1/users/ghost/contracts", headers=auth)
    assert r.status_code == 200 and r.json == {"contracts": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("action=fly", "action"),
        ("state=pending", "state"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%25%25", "cursor"),
        ("colour=red", "colour"),
    ],
)
def test_bad_list_parameters_are_400(
    client: FlaskClient, auth: dict, seeded: World, query: str, field: str
) -> None:
    r = client.get(f"/v1/users/u1/contracts?{query}", headers=auth)
    assert r.status_code == 400
    assert field in [e["field"] for e in r.json["errors"]]


def test_a_cursor_from_another_query_is_refused(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    first = client.get("/v1/users/u1/contracts?limit=1", headers=auth).json
    r = client.get(
        "/v1/users/u1/contracts",
        query_string={"state": "active", "cursor": first["next_cursor"]},
        headers=auth,
    )
    assert r.status_code == 400


def test_limit_above_the_maximum_is_clamped(client: FlaskClient, auth: dict, seeded: World) -> None:
    r = client.get("/v1/users/u1/contracts?limit=1000000", headers=auth)
    assert r.status_code == 200 and len(r.json["contracts"]) == 3


def test_eligible_accounts_of_a_site(client: FlaskClient, auth: dict, seeded: World) -> None:
    default = client.get("/v1/sites/default/eligible-accounts", headers=auth).json
    assert default["accounts"] == [
        {"account_id": "A1", "name": "Account A1"},
        {"account_id": "A2", "name": "Account A2"},
    ]
    acme = client.get("/v1/sites/acme/eligible-accounts", headers=auth).json
    assert ids(acme, "accounts", "account_id") == ["A1", "A3"]


def test_eligible_accounts_search(client: FlaskClient, auth: dict, world: World) -> None:
    world.site("default")
    names = {
        "source": "aspire-prod",
        "batch_id": "names",
        "extracted_at": "2026-11-26T09:00:00Z",
        "accounts": [
            {"account_id": "1000231", "name": "Acme Trucking LLC"},
            {"account_id": "2000999", "name": "Bayside Marine-Acmeco"},
        ],
    }
    world.rt.replica.apply(BatchIn.model_validate(names), world.rt.decider.clock())
    world.sync(
        [contract("C1", "1000231:Customer"), contract("C2", "2000999:Customer")], accounts=[]
    )

    def search(q: str) -> list[str]:
        r = client.get("/v1/sites/default/eligible-accounts", query_string={"q": q}, headers=auth)
        assert r.status_code == 200
        return ids(r.json, "accounts", "account_id")

    assert search("acme") == ["1000231", "2000999"]  # a word of either name, by prefix
    assert search("TRUCK") == ["1000231"]  # case-insensitive
    assert search("1000") == ["1000231"]  # an account number by prefix
    assert search("2000999") == ["2000999"]
    assert search("marine") == ["2000999"]
    assert search("rucking") == []  # not a word prefix
    assert search("zzz") == []


def test_eligible_accounts_of_an_unknown_site_is_404(client: FlaskClient, auth: dict) -> None:
    r = client.get("/v1/sites/nowhere/eligible-accounts", headers=auth)
    assert r.status_code == 404 and r.content_type == "application/problem+json"


def test_lists_need_the_decide_scope(client: FlaskClient, seeded: World) -> None:
    key = seeded.rt.keys.create("manager", frozenset({"manage"}), seeded.rt.decider.clock())
    h = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/users/u1/contracts", headers=h).status_code == 403
    assert client.get("/v1/sites/default/eligible-accounts", headers=h).status_code == 403
