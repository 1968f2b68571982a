"""POST /v1/aspire/batches and GET /v1/aspire/status."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.conftest import contract

BATCH = {
    "source": "aspire-prod",
    "batch_id": "2026-11-26T10:05:00Z#1",
    "extracted_at": "2026-11-26T10:05:00Z",
    "accounts": [{"account_id": "A-1001", "name": "Acme Trucking LLC", "email": "ap@acme.example"}],
    "contracts": [
        {
            "contract_id": "C-2001",
            "private_label": "ACME",
            "state": "active",
            "booked_at": "2026-11-20T15:00:00Z",
            "parties": [{"account_id": "A-1001", "role_type": "Customer"}],
        }
    ],
}


def test_the_spec_example_batch_applies_once(client: FlaskClient, auth: dict) -> None:
    r = client.post("/v1/aspire/batches", json=BATCH, headers=auth)
    assert r.status_code == 200
    assert r.json["applied"] is True
    assert r.json["counts"] == {"accounts": 1, "contracts": 1, "stale": 0}
    again = client.post("/v1/aspire/batches", json=BATCH, headers=auth)
    assert again.status_code == 200
    assert again.json["applied"] is False
    assert again.json["data_version"] == r.json["data_version"]


def test_status_before_and_after_a_batch(client: FlaskClient, auth: dict) -> None:
    before = client.get("/v1/aspire/status", headers=auth).json
    assert before == {
        "source": "aspire-prod",
        "last_batch_id": None,
        "last_synced_at": None,
        "extracted_at": None,
        "age_seconds": None,
        "data_version": 0,
    }
    client.post("/v1/aspire/batches", json=BATCH, headers=auth)
    after = client.get("/v1/aspire/status", headers=auth).json
    assert after["last_batch_id"] == BATCH["batch_id"]
    assert after["extracted_at"] == "2026-11-26T10:05:00Z"
    assert after["age_seconds"] > 0
    assert after["data_version"] == 1


def test_another_source_is_422(client: FlaskClient, auth: dict) -> None:
    r = client.post("/v1/aspire/batches", json={**BATCH, "source": "aspire-uat"}, headers=auth)
    assert r.status_code == 422
    assert r.json["code"] == "SOURCE_MISMATCH"


def test_invalid_batch_is_400_naming_the_records_and_changes_nothing(
    client: FlaskClient, auth: dict
) -> None:
    bad = {
        **BATCH,
        "contracts": [
            BATCH["contracts"][0],
            {**contract("C-2", "A-404:Customer")},
            {**contract("C-3", "A-1001:Customer"), "state": "quote"},
        ],
    }
    r = client.post("/v1/aspire/batches", json=bad, headers=auth)
    assert r.status_code == 400
    assert [e["field"] for e in r.json["errors"]] == ["contracts[2].state"]
    fixed = {**bad, "contracts": bad["contracts"][:2]}
    r = client.post("/v1/aspire/batches", json=fixed, headers=auth)
    assert r.status_code == 400
    assert [e["field"] for e in r.json["errors"]] == ["contracts[1].parties[0].account_id"]
    status = client.get("/v1/aspire/status", headers=auth).json
    assert status["data_version"] == 0 and status["last_batch_id"] is None


def test_a_large_batch_is_accepted(client: FlaskClient, auth: dict) -> None:
    accounts = [{"account_id": f"A{i}", "name": f"Account {i}"} for i in range(2000)]
    contracts = [
        contract(f"C{i}", f"A{i % 2000}:Customer", f"A{(i + 1) % 2000}:Guarantor")
        for i in range(10_000)
    ]
    body = {**BATCH, "accounts": accounts, "contracts": contracts}
    r = client.post("/v1/aspire/batches", json=body, headers=auth)
    assert r.status_code == 200
    assert r.json["counts"] == {"accounts": 2000, "contracts": 10_000, "stale": 0}
