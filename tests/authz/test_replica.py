"""ASPIRE sync batches: whole or nothing, idempotent, late batches never overwrite, one source."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from authz.decisions import CheckRequest
from authz.errors import InvalidInput, Refused, Unavailable
from authz.models import Contract, ContractParty
from authz.replica import BatchIn
from authz.runtime import Runtime
from tests.conftest import T0, World, contract


def count(rt: Runtime, model: type) -> int:
    with rt.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_batch_applies_and_reports_counts(world: World) -> None:
    r = world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:Guarantor")])
    assert (r.applied, r.accounts, r.contracts, r.stale) == (True, 1, 2, 0)
    assert count(world.rt, Contract) == 2


def test_same_batch_id_twice_changes_nothing(world: World, rt: Runtime) -> None:
    body = {
        "source": "aspire-prod",
        "batch_id": "b-1",
        "extracted_at": T0.isoformat(),
        "accounts": [{"account_id": "A1", "name": "A"}],
        "contracts": [contract("C1", "A1:Customer")],
    }
    first = rt.replica.apply(BatchIn.model_validate(body), T0)
    body["contracts"] = [contract("C1", "A1:Customer", state="closed")]
    again = rt.replica.apply(BatchIn.model_validate(body), T0)
    assert first.applied and not again.applied
    assert again.data_version == first.data_version
    with rt.db.read() as s:
        assert s.get(Contract, "C1").state == "active"


def test_a_contract_record_replaces_state_and_parties(world: World) -> None:
    world.sync([contract("C1", "A1:Customer", "A2:Guarantor")])
    world.sync([contract("C1", "A3:Customer", state="closed")], accounts=["A3"])
    with world.rt.db.read() as s:
        parties = s.execute(select(ContractParty.account_id, ContractParty.role_type)).all()
        assert sorted(parties) == [("A3", "Customer")]
        assert s.get(Contract, "C1").state == "closed"


def test_a_late_older_batch_never_overwrites_newer_data(world: World) -> None:
    world.sync([contract("C1", "A1:Customer", state="closed")], at=T0 + timedelta(hours=1))
    r = world.sync(
        [contract("C1", "A1:Customer"), contract("C2", "A1:Customer")], at=T0 + timedelta(minutes=5)
    )
    assert (r.contracts, r.stale) == (1, 2)  # C1 and account A1 are stale
    with world.rt.db.read() as s:
        assert s.get(Contract, "C1").state == "closed"
        assert s.get(Contract, "C2") is not None


def test_party_account_must_be_in_the_batch_or_held(world: World) -> None:
    with pytest.raises(InvalidInput) as err:
        world.sync([contract("C1", "A1:Customer"), contract("C2", "A9:Customer")], accounts=["A1"])
    assert [e.field for e in err.value.errors] == ["contracts[1].parties[0].account_id"]
    assert count(world.rt, Contract) == 0  # nothing of the batch was applied
    world.sync([contract("C1", "A1:Customer")])
    world.sync([contract("C3", "A1:Customer")], accounts=[])  # A1 is held now


def test_a_batch_with_a_duplicate_record_changes_nothing(world: World, rt: Runtime) -> None:
    world.sync([contract("C1", "A1:Customer")])
    before = rt.replica.status().freshness.data_version
    with pytest.raises(InvalidInput):
        world.sync([contract("C1", "A1:Customer", state="closed"), contract("C1", "A1:Customer")])
    with rt.db.read() as s:
        assert s.get(Contract, "C1").state == "active"
    assert rt.replica.status().freshness.data_version == before


def test_another_source_is_refused(rt: Runtime) -> None:
    body = {"source": "aspire-test", "batch_id": "x", "extracted_at": T0.isoformat()}
    with pytest.raises(Refused) as err:
        rt.replica.apply(BatchIn.model_validate(body), T0)
    assert err.value.code == "SOURCE_MISMATCH"


@pytest.mark.parametrize(
    "bad",
    [
        {"state": "booked"},
        {"contract_id": ""},
        {"contract_id": " C1"},
        {"contract_id": "C\x1f1"},
        {"private_label": 7},
        {"parties": [{"account_id": "A1"}]},
        {"booked_at": "yesterday"},
        {"surprise": True},
    ],
)
def test_invalid_records_are_refused(bad: dict) -> None:
    body = {
        "source": "aspire-prod",
        "batch_id": "x",
        "extracted_at": T0.isoformat(),
        "contracts": [{**contract("C1", "A1:Customer"), **bad}],
    }
    with pytest.raises(ValidationError):
        BatchIn.model_validate(body)


def test_extracted_at_needs_a_time_zone() -> None:
    with pytest.raises(ValidationError):
        BatchIn.model_validate(
            {"source": "s", "batch_id": "b", "extracted_at": "2026-11-26T10:00:00"}
        )


def test_data_version_grows_with_every_change(world: World, rt: Runtime) -> None:
    versions = [rt.replica.status().freshness.data_version]
    world.site("default")
    versions.append(rt.replica.status().freshness.data_version)
    world.sync([contract("C1", "A1:Customer")])
    versions.append(rt.replica.status().freshness.data_version)
    world.user("u", "default", "A1")  # a user and a link: two changes
    versions.append(rt.replica.status().freshness.data_version)
    rt.directory.unlink("u", "A1")
    versions.append(rt.replica.status().freshness.data_version)
    assert versions == sorted(set(versions)) and versions[-1] - versions[0] == 5
    decision = rt.decider.check(CheckRequest("u", "view", "C1"))
    assert decision.data_version == versions[-1]


def test_status_reports_the_newest_extract_and_its_age(world: World, rt: Runtime) -> None:
    assert rt.replica.status().freshness.extracted_at is None
    assert rt.replica.status().freshness.age_seconds(T0) is None
    world.sync([contract("C1", "A1:Customer")], at=T0 + timedelta(minutes=10))
    world.sync([contract("C2", "A1:Customer")], at=T0 + timedelta(minutes=5))
    f = rt.replica.status().freshness
    assert f.extracted_at == T0 + timedelta(minutes=10)
    assert f.last_batch_id == "test#2"
    assert f.age_seconds(T0 + timedelta(minutes=12)) == 120


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("failing", ["parties", "upsert"])
def test_a_copy_that_fails_is_unavailable_and_changes_nothing(
    world: World, rt: Runtime, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """PostgreSQL syncs through COPY, outside SQLAlchemy's execution: a failure there still
    becomes `Unavailable` (a 503) and rolls the whole batch back."""
    import psycopg

    world.sync([contract("C1", "A1:Customer")])
    before = rt.replica.status().freshness.data_version
    real = psycopg.Cursor.copy

    def copy(self: psycopg.Cursor, statement: str, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        target = "contract_parties" if failing == "parties" else "authz_upsert_contracts"
        if f"COPY {target} " in statement:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(self, statement, *args, **kw)

    monkeypatch.setattr(psycopg.Cursor, "copy", copy)
    with pytest.raises(Unavailable):
        world.sync([contract("C2", "A1:Customer"), contract("C1", "A2:Customer")])
    monkeypatch.undo()
    assert rt.replica.status().freshness.data_version == before
    assert count(rt, Contract) == 1
    with rt.db.read() as s:
        assert s.execute(select(ContractParty.account_id)).scalars().all() == ["A1"]
