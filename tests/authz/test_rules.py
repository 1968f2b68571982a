"""R1-R6 through the library: each test pins one rule and would fail if it broke."""

from __future__ import annotations

import pytest

from authz.decisions import CheckRequest
from authz.runtime import Runtime
from tests.conftest import World, contract

ALL = (
    "view",
    "view_documents",
    "make_payment",
    "manage_autopay",
    "request_payoff_quote",
    "submit_service_request",
)
VIEWS = ("view", "view_documents")


def allowed(rt: Runtime, user: str, action: str, contract_id: str, site: str | None = None) -> bool:
    return rt.decider.check(CheckRequest(user, action, contract_id, site)).allowed


def reasons(
    rt: Runtime, user: str, action: str, contract_id: str, site: str | None = None
) -> list[str]:
    return [
        r.code for r in rt.decider.explain(CheckRequest(user, action, contract_id, site)).reasons
    ]


@pytest.fixture
def base(world: World) -> World:
    world.site("default")
    world.site("acme", "ACME")
    world.site("nopay", "NOPAY", payments=False)
    world.sync(
        [
            contract("C-ACT", "A1:Customer"),
            contract("C-CLO", "A1:Customer", state="closed"),
            contract("C-PEN", "A1:Customer", state="pending"),
            contract("C-ACME", "A1:Customer", label="ACME"),
            contract("C-GUA", "A2:Guarantor"),
            contract("C-CO", "A2:Co-Lessee"),
            contract("C-VEN", "A2:Vendor"),
            contract("C-NP", "A3:Customer", label="NOPAY"),
            contract("C-NPCLO", "A3:Customer", label="NOPAY", state="closed"),
        ]
    )
    world.user("alice", "default", "A1")
    world.user("gina", "default", "A2")
    world.user("ned", "nopay", "A3")
    world.user("dora", "default", "A1", status="disabled")
    return world


def test_r1_booked_active_and_closed_contracts_are_visible(base: World) -> None:
    assert allowed(base.rt, "alice", "view", "C-ACT")
    assert allowed(base.rt, "alice", "view", "C-CLO")


def test_r1_pending_contract_is_never_visible(base: World) -> None:
    assert not any(allowed(base.rt, "alice", a, "C-PEN") for a in ALL)
    assert reasons(base.rt, "alice", "view", "C-PEN") == ["CONTRACT_NOT_BOOKED"]


def test_r2_guarantor_grants_what_customer_grants(base: World) -> None:
    assert all(allowed(base.rt, "gina", a, "C-GUA") for a in ALL)


@pytest.mark.parametrize("contract_id", ["C-CO", "C-VEN"])
def test_r2_other_roles_grant_nothing(base: World, contract_id: str) -> None:
    assert not any(allowed(base.rt, "gina", a, contract_id) for a in ALL)
    assert reasons(base.rt, "gina", "view", contract_id) == ["NO_LINKED_PARTY_ROLE"]


def test_r2_user_without_link_to_a_party_is_denied(base: World) -> None:
    assert not allowed(base.rt, "alice", "view", "C-GUA")


def test_r2_unlink_removes_access(base: World) -> None:
    base.rt.directory.unlink("alice", "A1")
    assert not allowed(base.rt, "alice", "view", "C-ACT")


def test_r3_site_without_label_does_not_see_labelled_contract(base: World) -> None:
    assert not allowed(base.rt, "alice", "view", "C-ACME")
    assert reasons(base.rt, "alice", "view", "C-ACME") == ["PRIVATE_LABEL_MISMATCH"]


def test_r3_labelled_site_sees_only_its_label(base: World) -> None:
    base.user("ann", "acme", "A1")
    assert allowed(base.rt, "ann", "view", "C-ACME")
    assert not allowed(base.rt, "ann", "view", "C-ACT")


def test_r3_site_label_change_applies_to_the_next_decision(base: World) -> None:
    base.rt.directory.put_site("default", "Default", "ACME", True, base.rt.decider.clock())
    assert allowed(base.rt, "alice", "view", "C-ACME")
    assert not allowed(base.rt, "alice", "view", "C-ACT")


def test_r4_contract_from_another_source_does_not_count(base: World, rt: Runtime) -> None:
    from dataclasses import replace

    from authz.decisions import Decider

    other = Decider(rt.db, rt.policy, replace(rt.settings, aspire_source="aspire-test"))
    try:
        decision = other.explain(CheckRequest("alice", "view", "C-ACT"))
    finally:
        other.close()  # its version watch (PostgreSQL) would outlive the test
    assert not decision.decision.allowed
    assert [r.code for r in decision.reasons] == ["CONTRACT_NOT_FOUND"]
    assert "aspire-prod" in decision.reasons[0].message


def test_r5_disabled_user_is_denied_everything(base: World) -> None:
    assert not any(allowed(base.rt, "dora", a, "C-ACT") for a in ALL)
    assert reasons(base.rt, "dora", "view", "C-ACT") == ["USER_DISABLED"]


def test_r5_request_through_the_users_own_site_is_allowed(base: World) -> None:
    assert allowed(base.rt, "alice", "view", "C-ACT", site="default")


@pytest.mark.parametrize("site", ["acme", "no-such-site"])
def test_r5_request_through_another_or_unknown_site_is_a_site_mismatch(
    base: World, site: str
) -> None:
    assert not allowed(base.rt, "alice", "view", "C-ACT", site=site)
    assert reasons(base.rt, "alice", "view", "C-ACT", site=site) == ["SITE_MISMATCH"]


def test_r6_active_contract_allows_every_action(base: World) -> None:
    assert all(allowed(base.rt, "alice", a, "C-ACT") for a in ALL)


def test_r6_closed_contract_allows_only_viewing(base: World) -> None:
    for action in ALL:
        assert allowed(base.rt, "alice", action, "C-CLO") == (action in VIEWS)
    assert reasons(base.rt, "alice", "make_payment", "C-CLO") == ["CONTRACT_CLOSED"]


def test_r6_payments_off_refuses_only_payment_actions(base: World) -> None:
    for action in ALL:
        assert allowed(base.rt, "ned", action, "C-NP") == (
            action not in ("make_payment", "manage_autopay")
        )
    assert reasons(base.rt, "ned", "manage_autopay", "C-NP") == ["PAYMENTS_DISABLED"]
    assert reasons(base.rt, "ned", "make_payment", "C-NPCLO") == [
        "CONTRACT_CLOSED",
        "PAYMENTS_DISABLED",
    ]


def test_unknown_user_is_a_deny_with_that_reason_alone(base: World) -> None:
    assert not allowed(base.rt, "ghost", "view", "C-ACT")
    assert reasons(base.rt, "ghost", "view", "C-ACT") == ["USER_NOT_FOUND"]


def test_unknown_contract_is_a_deny_with_that_reason_alone(base: World) -> None:
    assert reasons(base.rt, "alice", "view", "C-NONE") == ["CONTRACT_NOT_FOUND"]


def test_reasons_come_in_rule_order(base: World) -> None:
    base.user("pat", "acme", "A1", status="disabled")
    # R1 (pending), R3 (no label vs ACME), R5 (disabled, wrong site)
    assert reasons(base.rt, "pat", "make_payment", "C-PEN", site="default") == [
        "CONTRACT_NOT_BOOKED",
        "PRIVATE_LABEL_MISMATCH",
        "USER_DISABLED",
        "SITE_MISMATCH",
    ]


def test_role_types_compare_exactly_as_aspire_spells_them(world: World) -> None:
    world.site("default")
    world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:customer")])
    world.user("u", "default", "A1")
    assert allowed(world.rt, "u", "view", "C1")
    assert not allowed(world.rt, "u", "view", "C2")


def test_labels_compare_exactly(world: World) -> None:
    world.site("acme", "ACME")
    world.sync(
        [contract("C1", "A1:Customer", label="ACME"), contract("C2", "A1:Customer", label="Acme")]
    )
    world.user("u", "acme", "A1")
    assert allowed(world.rt, "u", "view", "C1")
    assert not allowed(world.rt, "u", "view", "C2")
