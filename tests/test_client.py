"""The portal's client against a real gunicorn: decisions, lists and refusals (the client
against servers that misbehave is in test_client_faults.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from authz.client import (
    AuthenticationFailed,
    AuthzClient,
    Check,
    InvalidRequest,
    Unavailable,
)
from authz.config import Settings
from authz.runtime import Runtime
from tests.conftest import POLICIES, T0, World, contract, emptied, sqlite_copy
from tests.test_live_service import Server

# The world every live test reads ------------------------------------------------------------

FLEET_ACTIVE = [f"F-{i:03}" for i in range(23)]
FLEET_CLOSED = [f"F-C{i:02}" for i in range(5)]
GRANITE = [f"B{i:02}" for i in range(12)]
U1_ACTIVE = {"C-ACTIVE", "C-GUAR", "C-A3OWN", *FLEET_ACTIVE}
U1_VIEW = U1_ACTIVE | {"C-CLOSED", *FLEET_CLOSED}


def _build(world: World) -> None:
    world.site("default")
    world.site("acme", "ACME")
    world.sync(
        [
            contract("C-ACTIVE", "A1:Customer"),
            contract("C-CLOSED", "A1:Customer", state="closed"),
            contract("C-PENDING", "A1:Customer", state="pending"),
            contract("C-GUAR", "A9:Customer", "A2:Guarantor"),
            contract("C-VENDOR", "A9:Customer", "A3:Vendor"),
            contract("C-A3OWN", "A3:Customer"),
            contract("C-ACME", "A1:Customer", label="ACME"),
            *(contract(c, "A1:Customer") for c in FLEET_ACTIVE),
            *(contract(c, "A1:Customer", state="closed") for c in FLEET_CLOSED),
            *(contract(f"G-{a}", f"{a}:Customer") for a in GRANITE),
        ]
    )
    world.user("u1", "default", "A1", "A2", "A3")
    world.user("u-acme", "acme", "A1")
    world.user("u-off", "default", "A1", status="disabled")


# (user, action, contract, site) -> the reasons of a deny; () is an allow.
CASES: list[tuple[str, str, str, str | None, tuple[str, ...]]] = [
    ("u1", "view", "C-ACTIVE", None, ()),
    ("u1", "view", "C-CLOSED", None, ()),
    ("u1", "view", "C-GUAR", None, ()),
    ("u1", "make_payment", "C-ACTIVE", "default", ()),
    ("u-acme", "view", "C-ACME", "acme", ()),
    ("u1", "make_payment", "C-CLOSED", None, ("CONTRACT_CLOSED",)),
    ("u1", "view", "C-PENDING", None, ("CONTRACT_NOT_BOOKED",)),
    ("u1", "view", "C-VENDOR", None, ("NO_LINKED_PARTY_ROLE",)),
    ("u1", "view", "C-ACME", None, ("PRIVATE_LABEL_MISMATCH",)),
    ("u-acme", "view", "C-ACME", "default", ("SITE_MISMATCH",)),
    ("u-off", "view", "C-ACTIVE", None, ("USER_DISABLED",)),
    ("nobody", "view", "C-ACTIVE", None, ("USER_NOT_FOUND",)),
    ("u1", "view", "C-NONE", None, ("CONTRACT_NOT_FOUND",)),
]


@dataclass
class Live:
    url: str
    key: str
    audit_key: str

    def client(self, **kw: Any) -> AuthzClient:
        return AuthzClient(self.url, self.key, **kw)

    def audit(self, path: str) -> Any:
        """A GET with the audit key, bypassing the client under test."""
        h = {"Authorization": f"Bearer {self.audit_key}"}
        return requests.get(self.url + path, headers=h, timeout=5).json()


def _fresh_store(kind: str, request: pytest.FixtureRequest, tmp: Path) -> str:
    if kind == "sqlite":
        return sqlite_copy(request.getfixturevalue("sqlite_template"), tmp)
    return emptied(request.getfixturevalue("pg_schema_url"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One gunicorn per store for the whole module: starting one takes seconds."""
    url = _fresh_store(request.param, request, tmp_path_factory.mktemp("client"))
    with Runtime.open(Settings(database_url=url, policy_dir=POLICIES)) as rt:
        _build(World(rt))
        key = rt.keys.create("portal", frozenset({"decide"}), T0)
        audit_key = rt.keys.create("auditor", frozenset({"audit"}), T0)
    srv = Server(url, tmp_path_factory.mktemp("journal"))
    srv.start()
    yield Live(srv.url, key, audit_key)
    srv.kill()


@pytest.fixture
def client(live: Live) -> Iterator[AuthzClient]:
    with live.client() as c:
        yield c


# Decisions against the live service ---------------------------------------------------------


@pytest.mark.parametrize(("user", "action", "contract_id", "site", "reasons"), CASES)
def test_check_answers_what_the_policy_decides(
    client: AuthzClient,
    live: Live,
    user: str,
    action: str,
    contract_id: str,
    site: str | None,
    reasons: tuple[str, ...],
) -> None:
    decision = client.check(user, action, contract_id, site)
    assert decision.allowed is (reasons == ())
    assert client.is_allowed(user, action, contract_id, site) is (reasons == ())
    assert decision.policy_version == live.audit("/v1/policy")["policy_version"]
    assert decision.data_version == live.audit("/v1/aspire/status")["data_version"]
    assert decision.decision_id


@pytest.mark.parametrize(("user", "action", "contract_id", "site", "reasons"), CASES)
def test_explain_gives_the_reasons_of_a_deny(
    client: AuthzClient,
    user: str,
    action: str,
    contract_id: str,
    site: str | None,
    reasons: tuple[str, ...],
) -> None:
    explained = client.explain(user, action, contract_id, site)
    assert explained.allowed is (reasons == ())
    assert tuple(r.code for r in explained.reasons) == reasons
    assert all(r.message for r in explained.reasons)
    assert explained.conditions, "every applicable condition is listed, passed or not"
    failed = [c.name for c in explained.conditions if not c.passed]
    assert (failed == []) is (reasons == ())


def test_batch_answers_in_the_order_sent(client: AuthzClient) -> None:
    order = [7, 0, 12, 3, 5, 1, 9, 4, 11, 2, 8, 6, 10]
    checks = [Check(*CASES[i][:4], correlation_id=f"row-{i}") for i in order]
    checks.append(Check("u1", "view", "C-ACTIVE"))  # no correlation id: comes back null
    got = client.check_batch(checks)
    assert [d.correlation_id for d in got] == [f"row-{i}" for i in order] + [None]
    assert [d.allowed for d in got] == [CASES[i][4] == () for i in order] + [True]
    assert len({d.decision_id for d in got}) == len(checks)


# Lists against the live service --------------------------------------------------------------


def test_contract_pages_list_every_contract_exactly_once(client: AuthzClient) -> None:
    first = client.list_user_contracts("u1", limit=7)
    assert len(first.contracts) == 7 and first.next_cursor is not None
    ids = [c.contract_id for c in client.iter_user_contracts("u1", page_size=7)]
    assert len(ids) == len(set(ids)) == len(U1_VIEW)
    assert set(ids) == U1_VIEW
    guar = next(
        c for c in client.iter_user_contracts("u1", page_size=7) if c.contract_id == "C-GUAR"
    )
    assert guar.roles == ("Guarantor",) and guar.state == "active" and guar.private_label is None


def test_state_and_action_narrow_the_contract_list(client: AuthzClient) -> None:
    active = {c.contract_id for c in client.iter_user_contracts("u1", state="active", page_size=5)}
    assert active == U1_ACTIVE
    payable = {c.contract_id for c in client.iter_user_contracts("u1", action="make_payment")}
    assert payable == U1_ACTIVE
    assert list(client.iter_user_contracts("nobody")) == []


def test_eligible_account_pages_list_every_account_exactly_once(client: AuthzClient) -> None:
    ids = [a.account_id for a in client.iter_eligible_accounts("default", page_size=4)]
    assert len(ids) == len(set(ids))
    assert set(ids) == {"A1", "A2", "A3", "A9", *GRANITE}
    page = client.list_eligible_accounts("default", q="b0", limit=4)
    assert [a.account_id for a in page.accounts] == GRANITE[:4] and page.next_cursor
    searched = [a.account_id for a in client.iter_eligible_accounts("default", q="B0", page_size=3)]
    assert searched == GRANITE[:10]
    assert [a.account_id for a in client.iter_eligible_accounts("acme")] == ["A1"]


# Refusals from the live service --------------------------------------------------------------


def test_a_consistency_token_pins_every_call_and_one_not_reached_is_unavailable(
    live: Live,
) -> None:
    held = live.audit("/v1/aspire/status")["data_version"]
    with live.client() as c:
        assert c.check("u1", "view", "C-ACTIVE", min_data_version=held).data_version >= held
        assert c.is_allowed("u1", "view", "C-ACTIVE", min_data_version=held)
        assert c.explain("u1", "view", "C-ACTIVE", min_data_version=held).allowed
        batch = c.check_batch([Check("u1", "view", "C-ACTIVE")], min_data_version=held)
        assert batch[0].allowed
        listed = c.list_user_contracts("u1", limit=1000, min_data_version=held).contracts
        assert {x.contract_id for x in listed} == U1_VIEW
        assert list(c.iter_eligible_accounts("default", min_data_version=held))
    with live.client(deadline=0.5) as c:  # Retry-After: 1 does not fit: raised at once
        for call in (
            lambda: c.check("u1", "view", "C-ACTIVE", min_data_version=held + 1),
            lambda: c.is_allowed("u1", "view", "C-ACTIVE", min_data_version=held + 1),
            lambda: c.list_user_contracts("u1", min_data_version=held + 1),
            lambda: c.check_batch([Check("u1", "view", "C-ACTIVE")], min_data_version=held + 1),
        ):
            with pytest.raises(Unavailable) as failed:
                call()
            assert failed.value.code == "DATA_VERSION_NOT_REACHED"
            assert failed.value.retry_after == 1


def test_an_unknown_action_is_an_invalid_request_naming_the_field(client: AuthzClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.check("u1", "delete", "C-ACTIVE")
    e = caught.value
    assert (e.status, e.code) == (400, "INVALID_REQUEST")
    assert [f.field for f in e.errors] == ["action"]
    assert "view_documents" in e.errors[0].message  # names the valid actions
    with pytest.raises(InvalidRequest):
        client.is_allowed("u1", "delete", "C-ACTIVE")
    with pytest.raises(InvalidRequest) as caught:
        client.check_batch([Check("u1", "view", "C-ACTIVE"), Check("u1", "fly", "C-ACTIVE")])
    assert [f.field for f in caught.value.errors] == ["checks[1].action"]


def test_an_unknown_site_is_not_found(client: AuthzClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.list_eligible_accounts("atlantis")
    assert (caught.value.status, caught.value.code) == (404, "SITE_NOT_FOUND")


def test_a_bad_limit_is_an_invalid_request(client: AuthzClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.list_user_contracts("u1", limit=0)
    assert caught.value.status == 400 and [f.field for f in caught.value.errors] == ["limit"]


def test_an_unknown_key_fails_authentication(live: Live) -> None:
    with AuthzClient(live.url, "azk_not-a-key") as c, pytest.raises(AuthenticationFailed) as caught:
        c.is_allowed("u1", "view", "C-ACTIVE")
    assert caught.value.status == 401 and caught.value.attempts == 1


def test_a_key_without_the_decide_scope_fails_authentication(live: Live) -> None:
    with AuthzClient(live.url, live.audit_key) as c, pytest.raises(AuthenticationFailed) as caught:
        c.check("u1", "view", "C-ACTIVE")
    assert (caught.value.status, caught.value.code) == (403, "FORBIDDEN")
