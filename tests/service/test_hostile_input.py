"""Hostile input: every write and decision endpoint answers a clear 4xx and changes nothing.

Each case takes a body that the endpoint accepts (`test_each_template_is_accepted_as_is`) and
spoils one thing: the size, the nesting, a type, an id's characters, the bytes, the Content-Type,
a key sent twice, a NaN. The answer must be problem+json with a stable code (400
INVALID_REQUEST naming the field, 413 REQUEST_ENTITY_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE),
and the store (data_version and the row count of every table, decision log included) must be
as it was. All cases share one seeded store per engine, so both engines stay cheap. The
cases themselves (templates and spoilers) are in `hostile_cases.py`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy import func, select

from authz import replica
from authz.config import Settings
from authz.db import Database
from authz.enums import Scope
from authz.models import Base, WorkerLease
from authz.runtime import Runtime
from service import create_app
from service.api import RouteSpec
from tests.conftest import POLICIES, T0, World, contract, emptied, sqlite_copy
from tests.service.hostile_cases import BATCH, TEMPLATES, Case, cases

PROBLEM = "application/problem+json"
CODES = {400: "INVALID_REQUEST", 413: "REQUEST_ENTITY_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


@dataclass
class Served:
    rt: Runtime
    app: Flask
    client: FlaskClient
    auth: dict[str, str]


def _serve(url: str) -> Served:
    """A seeded store: sites, a user with one linked account, another account eligible."""
    rt = Runtime.open(Settings(database_url=url, policy_dir=POLICIES), Database.from_url(url))
    world = World(rt)
    world.site("default")
    world.site("acme", "ACME")
    world.sync([contract("C1", "A1:Customer"), contract("C2", "A2:Customer")])
    world.user("u1", "default", "A1")
    key = rt.keys.create("tester", frozenset(Scope), T0)
    app = create_app({"RUNTIME": rt, "TESTING": True})
    return Served(rt, app, app.test_client(), {"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        url = sqlite_copy(template, tmp_path_factory.mktemp("hostile"))
    else:
        url = emptied(request.getfixturevalue("pg_schema_url"))
    s = _serve(url)
    yield s
    s.rt.close()


def _store(s: Served) -> dict[str, int]:
    """data_version as the API reports it, and the row count of every table of data (not
    the leases of deciding processes, which come and go with the processes themselves)."""
    s.rt.log.flush()
    status = s.client.get("/v1/aspire/status", headers=s.auth)
    assert status.status_code == 200
    counts = {"data_version": status.json["data_version"] if status.json else -1}
    with s.rt.db.read() as session:
        for table in Base.metadata.sorted_tables:
            if table.name == WorkerLease.__tablename__:
                continue
            counts[table.name] = session.execute(
                select(func.count()).select_from(table)
            ).scalar_one()
    return counts


def _limit(app: Flask, method: str, path: str) -> int:
    endpoint, _ = app.url_map.bind("localhost").match(path, method)
    spec: RouteSpec = getattr(app.view_functions[endpoint], "api_spec")  # noqa: B009
    return spec.max_bytes


@pytest.mark.parametrize("case", list(cases()))
def test_hostile_input_is_a_clear_4xx_and_changes_nothing(served: Served, case: Case) -> None:
    body = case.body
    if case.status == 413:
        assert body is not None
        body += b" " * (_limit(served.app, case.method, case.path) + 1 - len(body))
    headers = dict(served.auth)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    before = _store(served)

    r = served.client.open(case.path, method=case.method, data=body, headers=headers)

    assert r.status_code == case.status, r.get_data(as_text=True)[:500]
    assert r.content_type == PROBLEM
    problem = r.json
    assert problem is not None
    assert problem["status"] == case.status and problem["code"] == CODES[case.status]
    assert problem["title"] and problem["detail"] and problem["type"].startswith("urn:")
    assert "Traceback" not in r.get_data(as_text=True)
    if case.status == 400:
        fields = [e["field"] for e in problem["errors"]]
        assert all(e["message"] for e in problem["errors"])
        if case.field is not None:
            assert case.field in fields, problem
    assert _store(served) == before


def test_each_template_is_accepted_as_is(sqlite_template: Path, tmp_path: Path) -> None:
    """The cases above spoil bodies that work: each template, sent unspoiled, succeeds."""
    s = _serve(sqlite_copy(sqlite_template, tmp_path))
    try:
        for name, t in TEMPLATES.items():
            r = s.client.open(t.path, method=t.method, json=t.body, headers=s.auth)
            assert r.status_code == t.status, (name, r.get_data(as_text=True)[:500])
        unlink = s.client.delete("/v1/users/u1/accounts/A1", headers=s.auth)
        assert unlink.status_code == 204
    finally:
        s.rt.close()


def test_printable_unicode_ids_and_aspire_text_are_taken_as_sent(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """The rules refuse what hides or breaks text, not other scripts or ASPIRE's own spelling."""
    s = _serve(sqlite_copy(sqlite_template, tmp_path))
    try:
        batch = copy.deepcopy(BATCH)
        batch["accounts"][0].update(account_id="Å-ß-契約", name="Nine\tTrucking\nLLC")
        batch["contracts"][0].update(contract_id="C-é 9", private_label=None)
        batch["contracts"][0]["parties"][0].update(account_id="Å-ß-契約", role_type="Co-Lessee")
        r = s.client.post("/v1/aspire/batches", json=batch, headers=s.auth)
        assert r.status_code == 200 and r.json and r.json["applied"], r.get_data(as_text=True)
        site = {"name": "Café Ünïcode", "private_label": "LBL-Ω", "payments_enabled": True}
        assert s.client.put("/v1/sites/site-Ω", json=site, headers=s.auth).status_code == 201
        assert s.client.get("/v1/sites/site-%CE%A9/eligible-accounts", headers=s.auth).json
    finally:
        s.rt.close()


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("source", "aspire\u202e-prod"),
        ("batch_id", "b\x00"),
        ("accounts.0.account_id", "A\u200b1"),
        ("accounts.0.name", "Acme\x00"),
        ("contracts.0.contract_id", "C\ufffd"),
        ("contracts.0.private_label", " PL"),
        ("contracts.0.parties.0.role_type", "Customer\u2028"),
    ],
)
def test_the_library_batch_refuses_what_the_http_batch_refuses(where: str, value: str) -> None:
    """`authz sync FILE` validates with the same model as POST /v1/aspire/batches."""
    batch: dict[str, Any] = {
        "source": "aspire-prod",
        "batch_id": "b1",
        "extracted_at": "2026-11-26T10:00:00Z",
        "accounts": [{"account_id": "A1", "name": "Acme"}],
        "contracts": [
            {
                "contract_id": "C1",
                "private_label": None,
                "state": "active",
                "parties": [{"account_id": "A1", "role_type": "Customer"}],
            }
        ],
    }
    replica.BatchIn.model_validate(batch)
    *path, last = where.split(".")
    node: Any = batch
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    with pytest.raises(ValidationError):
        replica.BatchIn.model_validate(batch)
