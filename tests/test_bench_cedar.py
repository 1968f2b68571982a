"""The benchmark's Cedar copy of the policy decides as the Polar policy does (bench/cedar.py)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from authz.policy import Policy
from tests.conftest import POLICIES

# A `when { ... }` or `unless { ... }` clause of the Cedar file (no clause nests braces).
CLAUSE = re.compile(r"\b(when|unless) \{[^{}]*\}")


def _cedar() -> ModuleType:
    try:
        import bench.cedar
    except ImportError as exc:  # cedarpy is a dev and bench extra: CI must have it
        pytest.fail(f"{exc}: install the bench extra, pip install -e .[bench] (or .[dev])")
    return bench.cedar


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICIES)


def test_cedar_copy_decides_as_the_polar_policy_on_generated_facts(policy: Policy) -> None:
    cedar = _cedar()
    cases = cedar.generated_cases(policy.actions)
    assert cedar.agreement(policy, cases) == len(cases) >= 5000


def test_generated_facts_allow_and_deny_every_declared_action(policy: Policy) -> None:
    cedar = _cedar()
    seen = Counter(
        (a, policy.is_allowed(u, a, c)) for u, a, c in cedar.generated_cases(policy.actions)
    )
    for action in policy.actions:
        assert seen[(action, True)] >= 100, action
        assert seen[(action, False)] >= 100, action
    assert seen[(cedar.UNDECLARED, True)] == 0


def test_each_cedar_condition_changes_some_generated_decision(
    policy: Policy, tmp_path: Path
) -> None:
    """Dropping any one `when`/`unless` clause must make Cedar disagree somewhere: the
    generated facts exercise every condition, so agreement on them means something.

    Except user_exists: in the facts `user_facts` gives, an unknown user has no status, so
    user_active already denies; dropping it changes nothing, in Cedar as in Polar."""
    cedar = _cedar()
    text = cedar.CEDAR_FILE.read_text(encoding="utf-8")
    clauses = [c for c in CLAUSE.finditer(text) if c[0] != "when { principal.found }"]
    assert len(clauses) == 8  # contract_exists ... payments_enabled, as in the Polar `allow`
    cases = cedar.generated_cases(policy.actions)
    for clause in clauses:
        neutral = "when { true }" if clause[1] == "when" else "unless { false }"
        mutant = tmp_path / "mutant.cedar"
        mutant.write_text(text[: clause.start()] + neutral + text[clause.end() :])
        with pytest.raises(AssertionError, match="disagree"):
            cedar.agreement(policy, cases, cedar.CedarDecider(mutant))
