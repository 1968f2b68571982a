"""POST /v1/check, /v1/check/batch and /v1/explain as the spec writes them."""

from __future__ import annotations

import time
import uuid

import pytest
from flask.testing import FlaskClient

from tests.conftest import World, contract


@pytest.fixture
def seeded(world: World) -> World:
    world.site("default")
    world.site("acme", "ACME", payments=False)
    world.sync(
        [
            contract("C1", "A1:Customer"),
            contract("C2", "A1:Customer", state="closed"),
            contract("C3", "A2:Customer", label="ACME"),
            contract("C4", "A1:Vendor"),
        ]
    )
    world.user("u1", "default", "A1")
    world.user("u2", "acme", "A2")
    return world


def test_check_answers_the_spec_fields(client: FlaskClient, auth: dict, seeded: World) -> None:
    r = client.post(
        "/v1/check", json={"user_id": "u1", "action": "view", "contract_id": "C1"}, headers=auth
    )
    assert r.status_code == 200
    assert set(r.json) == {"allowed", "decision_id", "policy_version", "data_version"}
    assert r.json["allowed"] is True
    assert r.json["policy_version"] == seeded.rt.policy.version
    assert r.json["data_version"] == seeded.rt.replica.status().freshness.data_version


@pytest.mark.parametrize(
    ("body", "allowed"),
    [
        ({"user_id": "u1", "action": "make_payment", "contract_id": "C1"}, True),
        ({"user_id": "u1", "action": "make_payment", "contract_id": "C2"}, False),
        ({"user_id": "u1", "action": "view", "contract_id": "C4"}, False),
        ({"user_id": "u1", "action": "view", "contract_id": "C1", "site_id": "acme"}, False),
        ({"user_id": "u1", "action": "view", "contract_id": "C1", "site_id": "default"}, True),
        ({"user_id": "u2", "action": "make_payment", "contract_id": "C3"}, False),
        ({"user_id": "u2", "action": "submit_service_request", "contract_id": "C3"}, True),
        ({"user_id": "ghost", "action": "view", "contract_id": "C1"}, False),
        ({"user_id": "u1", "action": "view", "contract_id": "C-NONE"}, False),
    ],
)
def test_check_decides(
    client: FlaskClient, auth: dict, seeded: World, body: dict, allowed: bool
) -> None:
    r = client.post("/v1/check", json=body, headers=auth)
    assert r.status_code == 200
    assert r.json["allowed"] is allowed


def test_unknown_action_is_400_naming_the_valid_actions(client: FlaskClient, auth: dict) -> None:
    r = client.post(
        "/v1/check", json={"user_id": "u1", "action": "fly", "contract_id": "C1"}, headers=auth
    )
    assert r.status_code == 400
    assert r.content_type == "application/problem+json"
    assert r.json["errors"][0]["field"] == "action"
    for action in ("view", "view_documents", "make_payment", "submit_service_request"):
        assert action in r.json["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "view", "contract_id": "C1"}, "user_id"),
        ({"user_id": 7, "action": "view", "contract_id": "C1"}, "user_id"),
        ({"user_id": "u", "action": "view", "contract_id": ""}, "contract_id"),
        ({"user_id": "u", "action": "view", "contract_id": "C1", "site_id": 3}, "site_id"),
        ({"user_id": "u", "action": "view", "contract_id": "C1", "extra": 1}, "extra"),
        ({"user_id": "u\x00", "action": "view", "contract_id": "C1"}, "user_id"),
        ([], "body"),
    ],
)
def test_invalid_check_is_400_naming_the_field(
    client: FlaskClient, auth: dict, body: object, field: str
) -> None:
    r = client.post("/v1/check", json=body, headers=auth)
    assert r.status_code == 400
    assert field in [e["field"] for e in r.json["errors"]]
    assert {"type", "title", "status", "detail"} <= set(r.json)


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"])
def test_malformed_json_is_400_never_500(client: FlaskClient, auth: dict, raw: bytes) -> None:
    r = client.post("/v1/check", data=raw, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code in (400, 413)
    assert r.content_type == "application/problem+json"


def test_oversized_check_is_413(client: FlaskClient, auth: dict) -> None:
    body = {"user_id": "u" * 100, "action": "view", "contract_id": "C1", "pad": "x" * 100_000}
    r = client.post("/v1/check", json=body, headers=auth)
    assert r.status_code == 413
    assert r.content_type == "application/problem+json"


def test_batch_answers_in_order_with_correlation_ids(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    checks = [
        {"user_id": "u1", "action": "view", "contract_id": "C1", "correlation_id": "a"},
        {"user_id": "u1", "action": "make_payment", "contract_id": "C2"},
        {"user_id": "u2", "action": "view", "contract_id": "C3", "correlation_id": "c"},
    ]
    r = client.post("/v1/check/batch", json={"checks": checks}, headers=auth)
    assert r.status_code == 200
    results = r.json["results"]
    assert [x["allowed"] for x in results] == [True, False, True]
    assert [x["correlation_id"] for x in results] == ["a", None, "c"]
    assert len({x["decision_id"] for x in results}) == 3


def test_batch_of_1000_is_accepted_and_1001_refused(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    item = {
        "user_id": "u1",
        "action": "view",
        "contract_id": "C1",
        "correlation_id": "x" * 100,
        "site_id": "default",
    }
    ok = client.post("/v1/check/batch", json={"checks": [item] * 1000}, headers=auth)
    assert ok.status_code == 200 and len(ok.json["results"]) == 1000
    ids = [uuid.UUID(x["decision_id"]) for x in ok.json["results"]]
    assert len(set(ids)) == 1000 and {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    texts = [x["decision_id"] for x in ok.json["results"]]
    assert texts == [str(i) for i in ids]  # the canonical spelling
    # Random bits everywhere they belong: 3 digits after the version, 2 bits of the variant
    # digit, 15 more digits.
    assert {t[19] for t in texts} == set("89ab")
    assert len({t[15:18] for t in texts}) > 700 and len({t[20:] for t in texts}) == 1000
    # Version 7 starts with the Unix time in ms: the time these were decided.
    stamps = {i.int >> 80 for i in ids}
    assert max(stamps) - min(stamps) < 60_000
    assert abs(min(stamps) - time.time() * 1000) < 60_000
    too_many = client.post("/v1/check/batch", json={"checks": [item] * 1001}, headers=auth)
    assert too_many.status_code == 400
    empty = client.post("/v1/check/batch", json={"checks": []}, headers=auth)
    assert empty.status_code == 400


def test_one_invalid_batch_item_fails_the_batch_naming_its_index(
    client: FlaskClient, auth: dict
) -> None:
    checks = [{"user_id": "u1", "action": "view", "contract_id": "C1"}] * 3
    bad = [*checks[:2], {"user_id": "u1", "action": "steal", "contract_id": "C1"}]
    r = client.post("/v1/check/batch", json={"checks": bad}, headers=auth)
    assert r.status_code == 400
    assert [e["field"] for e in r.json["errors"]] == ["checks[2].action"]
    typed = [*checks[:1], {"user_id": 5, "action": "view", "contract_id": "C1"}]
    r = client.post("/v1/check/batch", json={"checks": typed}, headers=auth)
    assert r.json["errors"][0]["field"] == "checks[1].user_id"


def test_explain_lists_conditions_and_reasons(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    body = {"user_id": "u1", "action": "make_payment", "contract_id": "C2"}
    r = client.post("/v1/explain", json=body, headers=auth)
    assert r.status_code == 200
    assert r.json["allowed"] is False
    names = [c["name"] for c in r.json["conditions"]]
    assert names == [
        "user_exists",
        "contract_exists",
        "contract_booked",
        "party_role_grants_action",
        "private_label_matches",
        "user_active",
        "request_from_user_site",
        "contract_not_closed",
        "payments_enabled",
    ]
    assert [c["name"] for c in r.json["conditions"] if not c["passed"]] == ["contract_not_closed"]
    assert [x["code"] for x in r.json["reasons"]] == ["CONTRACT_CLOSED"]


def test_explain_of_an_allowed_decision_has_no_reasons(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    body = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    r = client.post("/v1/explain", json=body, headers=auth)
    assert r.json["allowed"] is True and r.json["reasons"] == []
    assert all(c["passed"] for c in r.json["conditions"])
    assert "contract_not_closed" not in [c["name"] for c in r.json["conditions"]]


def test_explanations_name_the_facts_support_needs(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    label = client.post(
        "/v1/explain", headers=auth, json={"user_id": "u2", "action": "view", "contract_id": "C1"}
    ).json
    message = label["reasons"][-1]["message"]
    assert "no private label" in message and "'ACME'" in message and "acme" in message
    role = client.post(
        "/v1/explain", headers=auth, json={"user_id": "u1", "action": "view", "contract_id": "C4"}
    ).json
    assert role["reasons"][0]["code"] == "NO_LINKED_PARTY_ROLE"
    assert "A1" in role["reasons"][0]["message"] and "Vendor" in role["reasons"][0]["message"]
    assert "last synced" in role["reasons"][0]["message"]
    missing = client.post(
        "/v1/explain", headers=auth, json={"user_id": "u1", "action": "view", "contract_id": "C9"}
    ).json
    assert [x["code"] for x in missing["reasons"]] == ["CONTRACT_NOT_FOUND"]
    assert "may not have arrived yet" in missing["reasons"][0]["message"]


def test_the_data_version_a_link_answers_is_a_consistency_token(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    seeded.sync([contract("C9", "A9:Customer")])
    linked = client.post("/v1/users/u1/accounts", json={"account_id": "A9"}, headers=auth)
    token = linked.json["data_version"]
    body = {"user_id": "u1", "action": "view", "contract_id": "C9", "min_data_version": token}
    assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is True
    assert client.post("/v1/explain", json=body, headers=auth).json["allowed"] is True
    listed = client.get(f"/v1/users/u1/contracts?min_data_version={token}", headers=auth)
    assert "C9" in [c["contract_id"] for c in listed.json["contracts"]]
    unlinked = client.delete("/v1/users/u1/accounts/A9", headers=auth)
    after = int(unlinked.headers["X-Data-Version"])
    body["min_data_version"] = after
    assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is False


def test_a_version_not_reached_is_a_503_never_an_older_answer(
    client: FlaskClient, auth: dict, seeded: World
) -> None:
    held = seeded.rt.replica.status().freshness.data_version
    check = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    eligible = f"/v1/sites/default/eligible-accounts?min_data_version={held + 1}"
    asks = [
        client.post("/v1/check", json={**check, "min_data_version": held + 1}, headers=auth),
        client.post(
            "/v1/check/batch", json={"checks": [check], "min_data_version": held + 1}, headers=auth
        ),
        client.post("/v1/explain", json={**check, "min_data_version": held + 1}, headers=auth),
        client.get(f"/v1/users/u1/contracts?min_data_version={held + 1}", headers=auth),
        client.get(eligible, headers=auth),
    ]
    for r in asks:
        assert r.status_code == 503 and r.json["code"] == "DATA_VERSION_NOT_REACHED"
        assert r.headers["Retry-After"] == "1"
        assert not {"allowed", "results", "contracts", "accounts"} & set(r.json)
    ok = client.post("/v1/check", json={**check, "min_data_version": held}, headers=auth)
    assert ok.status_code == 200 and ok.json["allowed"] is True


@pytest.mark.parametrize("token", ["5", -1, 1.5, True, 2**63])
def test_a_malformed_consistency_token_is_a_400(
    client: FlaskClient, auth: dict, token: object
) -> None:
    body = {"user_id": "u1", "action": "view", "contract_id": "C1", "min_data_version": token}
    r = client.post("/v1/check", json=body, headers=auth)
    assert r.status_code == 400 and r.json["errors"][0]["field"] == "min_data_version"


def test_a_key_twice_inside_a_batch_item_is_400(client: FlaskClient, auth: dict) -> None:
    """A key sent twice inside one item is refused as one at the top of the body is."""
    item = b'{"user_id": "u1", "user_id": "u2", "action": "view", "contract_id": "C1"}'
    raw = b'{"checks": [{"user_id": "u1", "action": "view", "contract_id": "C2"}, ' + item + b"]}"
    headers = {**auth, "Content-Type": "application/json"}
    r = client.post("/v1/check/batch", data=raw, headers=headers)
    assert r.status_code == 400
    assert r.json["errors"][0]["field"] == "body"
    assert "'user_id' appears more than once" in r.json["errors"][0]["message"]


def test_a_version_read_sent_for_a_refused_request_is_dropped_when_it_ends(
    client: FlaskClient, auth: dict, seeded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check sends the store's version read before reading its body (PostgreSQL, while
    its version watch is not trusted); one refused after that (an unknown action) must not
    leave its answer to the next request."""
    rt = client.application.extensions["authz"]
    # No watch (it is back, and closed, at the end): decisions read the version.
    monkeypatch.setattr(rt.decider, "_watch", None)
    body = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    for _ in range(2):  # facts held, the probe's connection in use
        assert client.post("/v1/check", json=body, headers=auth).json["allowed"] is True
    probe = rt.decider._probe
    sent = []
    send = probe.send

    def sending() -> None:
        send()
        sent.append(getattr(probe._local, "sent", None))

    probe.send = sending
    r = client.post("/v1/check", json={**body, "action": "fly"}, headers=auth)
    assert r.status_code == 400 and len(sent) == 1
    assert (sent[0] is not None) == (rt.db.engine.dialect.name == "postgresql")
    assert getattr(probe._local, "sent", None) is None
