"""Schemathesis against the OpenAPI document, in-process: no 500, nothing the document does not say.

Every operation runs schemathesis' phases (examples, coverage, fuzzing; valid and invalid data)
with a bounded, derandomized number of examples, so a run takes seconds and finds the same
thing every time. A 500, an undocumented status, a body that breaks its documented schema or
a content type the document does not name fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authz.runtime import Runtime
from service.openapi import document
from service.routes import aspire, audit, decisions, directory, lists, ops
from tests.conftest import World, contract, sqlite_copy


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """Any 5xx fails, except the documented 503 `DATA_VERSION_NOT_REACHED`: the answer to a
    `min_data_version` the store has not reached (the generators send huge ones)."""
    if response.status_code == 503:
        body = response.json()
        if body.get("code") == "DATA_VERSION_NOT_REACHED" and body.get("status") == 503:
            return None
    return not_a_server_error(ctx, response, case)  # type: ignore[no-any-return]


CHECKS = [
    no_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
AREAS = (ops, decisions, lists, directory, aspire, audit)


def _document() -> dict[str, Any]:
    """The document as the app serves it, made before any fixture exists (for collection).

    schemathesis' fixture-backed loader does not run on pytest 9.2 (it writes
    `Node._nodeid`), so the schema is loaded at import from the blueprints themselves;
    `test_the_tested_document_is_the_served_one` keeps this list equal to the app's.
    """
    bare = Flask("openapi-only")
    for area in AREAS:
        bare.register_blueprint(area.bp)
    return document(bare)


schema = schemathesis.openapi.from_dict(_document())


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: these checks are about the HTTP contract, which is the same on both stores."""
    return sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture
def seeded(app: Flask, rt: Runtime, world: World, auth: dict[str, str]) -> Flask:
    """Ids that the generators try first ("0", "00"...) exist, so answers of 200 are checked too."""
    world.site("0")
    world.sync(
        [contract("0", "0:Customer"), contract("1", "0:Guarantor", state="closed")],
        accounts=["0", "00"],
    )
    world.user("0", "0", "0")
    client = app.test_client()
    for c in ("0", "1"):
        body = {"user_id": "0", "action": "view", "contract_id": c}
        assert client.post("/v1/check", json=body, headers=auth).status_code == 200
    rt.log.flush()
    return app


def test_the_tested_document_is_the_served_one(client: FlaskClient) -> None:
    assert client.get("/openapi.json").json == _document()


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app per operation; examples share it on purpose
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_operation_keeps_its_documented_contract(
    case: schemathesis.Case, seeded: Flask, auth: dict[str, str]
) -> None:
    case.call_and_validate(app=seeded, headers=auth, checks=CHECKS)


def test_the_run_reaches_answers_with_data(seeded: Flask, auth: dict[str, str]) -> None:
    """The seeded ids answer 200 with content, so the run above validates real bodies."""
    client = seeded.test_client()

    def get(path: str) -> Any:
        r = client.get(path, headers=auth)
        assert r.status_code == 200
        return r.json

    assert [a["account_id"] for a in get("/v1/users/0")["linked_accounts"]] == ["0"]
    assert [c["contract_id"] for c in get("/v1/users/0/contracts")["contracts"]] == ["0", "1"]
    assert [a["account_id"] for a in get("/v1/sites/0/eligible-accounts")["accounts"]] == ["0"]
    decided = get("/v1/decisions")["decisions"]
    assert {d["input"]["contract_id"] for d in decided} == {"0", "1"}
