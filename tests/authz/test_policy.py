"""The policy file itself: loading, version, its declarations, and allow == its named conditions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.enums import Action, LinkReasonCode, ReasonCode
from authz.errors import PolicyLoadError
from authz.fixtures import LibraryTarget, run_paths
from authz.policy import Policy, PolicyFile, policy_version
from tests.conftest import POLICIES

POLICY = Policy.load(POLICIES)
LABELS = st.sampled_from([None, "ACME", "SUMMIT"])
ROLES = st.lists(
    st.sampled_from(["Customer", "Guarantor", "Vendor", "Co-Lessee", "customer"]),
    unique=True,
    max_size=3,
)
USERS = st.fixed_dictionaries(
    {
        "found": st.booleans(),
        "status": st.sampled_from(["active", "disabled", None]),
        "site_id": st.sampled_from(["s1", "s2"]),
        "site_label": LABELS,
        "payments_enabled": st.booleans(),
        "via_site": st.sampled_from([None, "s1", "s2", "s3"]),
    }
)
CONTRACTS = st.fixed_dictionaries(
    {
        "found": st.booleans(),
        "from_connected_source": st.booleans(),
        "state": st.sampled_from(["pending", "active", "closed", None]),
        "private_label": LABELS,
        "roles": ROLES,
    }
)


def test_actions_in_the_policy_are_the_action_enum() -> None:
    assert POLICY.actions == tuple(a.value for a in Action)


def test_reason_codes_in_the_policy_are_the_enums() -> None:
    codes = {c.code for a in POLICY.actions for c in POLICY.conditions(a)}
    assert codes == {c.value for c in ReasonCode}
    assert [c.code for c in POLICY.link_conditions] == [c.value for c in LinkReasonCode]


def test_conditions_apply_per_action() -> None:
    names = lambda a: [c.name for c in POLICY.conditions(a)]  # noqa: E731
    assert "contract_not_closed" not in names("view")
    assert "payments_enabled" not in names("request_payoff_quote")
    assert names("make_payment")[-2:] == ["contract_not_closed", "payments_enabled"]


@settings(max_examples=400, deadline=None)
@given(user=USERS, contract=CONTRACTS, action=st.sampled_from([*Action, "fly"]))
def test_allow_holds_exactly_when_every_applicable_named_condition_holds(
    user: dict, contract: dict, action: str
) -> None:
    conditions = POLICY.conditions(action)
    every = bool(conditions) and all(
        POLICY.holds(c.name, user, action, contract) for c in conditions
    )
    assert POLICY.is_allowed(user, action, contract) == every


def test_policy_version_is_stable_whatever_the_load_order() -> None:
    a = PolicyFile("a.polar", "x", "allow(_, _, _);")
    b = PolicyFile("b.polar", "y", "f(1);")
    assert policy_version([a, b]) == policy_version([b, a])
    assert policy_version([a, b]) != policy_version([a])
    assert POLICY.version == Policy.load(POLICIES).version


def test_policy_version_changes_with_any_byte(tmp_path: Path) -> None:
    shutil.copy(POLICIES / "contract_access.polar", tmp_path)
    before = Policy.load(tmp_path).version
    with (tmp_path / "contract_access.polar").open("a") as f:
        f.write("\n# a comment\n")
    assert Policy.load(tmp_path).version != before


def test_a_policy_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.polar").write_text("allow(user, action, contract) if")
    with pytest.raises(PolicyLoadError):
        Policy.load(tmp_path)


def test_an_empty_policy_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError):
        Policy.load(tmp_path)


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = (POLICIES / "contract_access.polar").read_text()
    assert old in text
    (tmp_path / "contract_access.polar").write_text(text.replace(old, new))
    shutil.copytree(POLICIES / "tests", tmp_path / "tests")
    return tmp_path


def test_narrowing_guarantor_is_one_line(tmp_path: Path) -> None:
    d = _edited(
        tmp_path,
        'role_grants("Guarantor", action) if action(action);',
        'role_grants("Guarantor", action) if action in ["view", "view_documents"];',
    )
    narrowed = Policy.load(d)
    user = {
        "found": True,
        "status": "active",
        "site_id": "s",
        "site_label": None,
        "payments_enabled": True,
        "via_site": None,
    }
    c = {
        "found": True,
        "from_connected_source": True,
        "state": "active",
        "private_label": None,
        "roles": ["Guarantor"],
    }
    assert narrowed.is_allowed(user, "view", c)
    assert not narrowed.is_allowed(user, "make_payment", c)
    assert narrowed.is_allowed(user, "make_payment", dict(c, roles=["Customer"]))
    assert narrowed.roles_granting("make_payment") == ("Customer",)


def test_the_fixtures_pass_on_the_policy() -> None:
    results = run_paths([POLICIES / "tests"], LibraryTarget(POLICIES), POLICY.actions)
    assert sum(r.cases for r in results) >= 40
    assert [f for r in results for f in r.failures] == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('contract_booked(_user, _action, contract) if contract.state = "closed";', ""),
        ('party_role("Guarantor");', ""),
        ("    contract.private_label = user.site_label;", "    user.found = contract.found;"),
        (
            'user_active(user, _action, _contract) if user.status = "active";',
            "user_active(_user, _action, _contract);",
        ),
        ('needs_payments("manage_autopay");', ""),
        ('holding.state = "active"', 'holding.state != "pending"'),
    ],
    ids=["R1-closed", "R2-guarantor", "R3-label", "R5-disabled", "R6-payments", "R7-active"],
)
def test_the_fixtures_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    d = _edited(tmp_path, old, new)
    broken = Policy.load(d)
    results = run_paths([d / "tests"], LibraryTarget(d), broken.actions)
    assert [f for r in results for f in r.failures] != []


USER = {
    "found": True,
    "status": "active",
    "site_id": "s1",
    "site_label": None,
    "payments_enabled": True,
    "via_site": None,
}
CONTRACT = {
    "found": True,
    "from_connected_source": True,
    "state": "active",
    "private_label": None,
    "roles": ["Customer"],
}


def test_polar_runs_once_per_distinct_facts_and_an_error_is_not_remembered() -> None:
    policy = Policy.load(POLICIES)
    asked: list[object] = []
    real = policy._oso.is_allowed

    def counting(*args: object) -> bool:
        asked.append(args)
        if len(asked) == 1:
            from polar.exceptions import PolarRuntimeError

            raise PolarRuntimeError("the policy raised")
        return bool(real(*args))

    policy._oso.is_allowed = counting  # type: ignore[method-assign]
    assert policy.is_allowed(USER, "view", CONTRACT) is False  # the error: a deny
    assert policy.is_allowed(USER, "view", CONTRACT) is True  # asked again, not remembered
    assert policy.is_allowed(dict(USER), "view", dict(CONTRACT)) is True
    assert len(asked) == 2
    vendor = {**CONTRACT, "roles": ["Vendor"]}
    assert policy.is_allowed(USER, "view", vendor) is False  # other facts: asked
    assert policy.is_allowed(USER, "make_payment", CONTRACT) is True  # another action: asked
    assert len(asked) == 4


@settings(max_examples=300, deadline=None)
@given(user=USERS, contract=CONTRACTS, action=st.sampled_from([*Action, "fly"]))
def test_a_remembered_answer_is_the_answer_polar_gives(
    user: dict, contract: dict, action: str
) -> None:
    POLICY.is_allowed(user, action, contract)  # remembered now, if it was not
    assert POLICY.is_allowed(user, action, contract) == bool(
        POLICY._oso.is_allowed(user, action, contract)
    )
    for c in POLICY.conditions(action):
        POLICY.holds(c.name, user, action, contract)
        assert POLICY.holds(c.name, user, action, contract) == bool(
            POLICY._oso.query_rule_once(c.name, user, action, contract)
        )


@settings(max_examples=200, deadline=None)
@given(user=USERS, contract=CONTRACTS, action=st.sampled_from(list(Action)))
def test_remembered_denial_codes_are_the_reported_conditions(
    user: dict, contract: dict, action: str
) -> None:
    POLICY.denial_codes(user, action, contract)  # remembered now, if it was not
    fresh = Policy.load(POLICIES)
    expected = tuple(c.code for c in fresh.reported(fresh.evaluate(user, action, contract)))
    assert POLICY.denial_codes(user, action, contract) == expected


def test_denial_codes_are_not_remembered_when_a_condition_raised() -> None:
    from polar.exceptions import PolarRuntimeError

    policy = Policy.load(POLICIES)
    real = policy._oso.query_rule_once
    broken = {"on": True}

    def flaky(name: str, *args: object) -> bool:
        if broken["on"]:
            raise PolarRuntimeError("the policy raised")
        return bool(real(name, *args))

    policy._oso.query_rule_once = flaky  # type: ignore[method-assign]
    vendor = {**CONTRACT, "roles": ["Vendor"]}
    during = policy.denial_codes(USER, "view", vendor)
    assert during == ("USER_NOT_FOUND", "CONTRACT_NOT_FOUND")  # every condition failed
    broken["on"] = False
    assert policy.denial_codes(USER, "view", vendor) == ("NO_LINKED_PARTY_ROLE",)
