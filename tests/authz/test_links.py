"""R7 link eligibility, decided by the policy's link_eligible rule."""

from __future__ import annotations

import pytest

from authz.decisions import CheckRequest
from authz.errors import NotFound, Refused
from authz.runtime import Runtime
from tests.conftest import T0, World, contract


@pytest.fixture
def linked(world: World) -> World:
    world.site("default")
    world.site("acme", "ACME")
    world.sync(
        [
            contract("C1", "A1:Customer"),
            contract("C2", "A2:Guarantor", label="ACME"),
            contract("C3", "A3:Vendor"),
            contract("C4", "A4:Customer", state="closed"),
            contract("C5", "A5:Customer", state="pending"),
        ]
    )
    world.user("u", "default")
    world.user("v", "acme")
    return world


def refusal(rt: Runtime, user: str, account: str) -> list[str]:
    with pytest.raises(Refused) as err:
        rt.directory.link(user, account, T0)
    assert err.value.code == "ACCOUNT_NOT_ELIGIBLE"
    return [r["code"] for r in err.value.extra["reasons"]]


def test_customer_on_an_active_contract_under_the_site_label_links(linked: World) -> None:
    assert linked.rt.directory.link("u", "A1", T0).created
    assert linked.rt.directory.link("v", "A2", T0).created


def test_linking_twice_changes_nothing(linked: World, rt: Runtime) -> None:
    first = rt.directory.link("u", "A1", T0)
    again = rt.directory.link("u", "A1", T0)
    assert not again.created and again.data_version == first.data_version


@pytest.mark.parametrize(
    ("user", "account", "code"),
    [
        ("u", "A9", "ACCOUNT_NOT_FOUND"),
        ("u", "A3", "NO_ACTIVE_PARTY_ROLE"),
        ("u", "A4", "NO_ACTIVE_PARTY_ROLE"),
        ("u", "A5", "NO_ACTIVE_PARTY_ROLE"),
        ("u", "A2", "PRIVATE_LABEL_MISMATCH"),
        ("v", "A1", "PRIVATE_LABEL_MISMATCH"),
    ],
)
def test_refused_links_say_why(linked: World, user: str, account: str, code: str) -> None:
    assert refusal(linked.rt, user, account) == [code]
    assert linked.rt.directory.get_user(user).linked_accounts == []


def test_a_link_stays_when_its_contracts_close(linked: World, rt: Runtime) -> None:
    rt.directory.link("u", "A1", T0)
    linked.sync([contract("C1", "A1:Customer", state="closed")])
    assert [a.account_id for a in rt.directory.get_user("u").linked_accounts] == ["A1"]
    assert rt.decider.check(CheckRequest("u", "view", "C1")).allowed
    assert not rt.decider.check(CheckRequest("u", "make_payment", "C1")).allowed


def test_unknown_user_is_not_found(linked: World, rt: Runtime) -> None:
    with pytest.raises(NotFound):
        rt.directory.link("nobody", "A1", T0)


def test_unlinking_what_is_not_linked_is_not_found(linked: World, rt: Runtime) -> None:
    with pytest.raises(NotFound) as err:
        rt.directory.unlink("u", "A1")
    assert err.value.code == "LINK_NOT_FOUND"


def test_user_on_a_missing_site_is_refused(rt: Runtime) -> None:
    with pytest.raises(Refused) as err:
        rt.directory.put_user("u", "nowhere", "u@example.com", "active", T0)
    assert err.value.code == "SITE_NOT_FOUND"
