"""AWS Cedar (cedarpy) deciding the rules of our Polar policy, for `make bench` to compare.

`bench/cedar/contract_access.cedar` restates `policies/contract_access.polar`; `agreement`
proves the two decide alike, here on the benchmark's own facts and in
tests/test_bench_cedar.py on generated ones. `cedar_section` then times both deciding the
same requests on the same facts. A bench-only dependency: nothing in authz/ or service/
imports this module.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cedarpy
from oso import Oso

from authz.facts import (
    ContractRecord,
    UserRecord,
    contract_facts,
    load_contracts,
    load_roles,
    load_users,
    user_facts,
)
from authz.policy import Facts, Policy
from bench.common import timed_together

if TYPE_CHECKING:
    from authz.decisions import CheckRequest
    from authz.runtime import Runtime
    from bench.common import Report

CEDAR_FILE = Path(__file__).with_name("cedar") / "contract_access.cedar"
# A decision: the facts our policy receives (authz.facts.user_facts, contract_facts).
Case = tuple[Facts, str, Facts]
# The facts name no ids, and the rules read none: every request is about the same two.
_USER = {"type": "User", "id": "user"}
_CONTRACT = {"type": "Contract", "id": "contract"}


class CedarDecider:
    """The Cedar copy of the policy, parsed once; `decide` takes our policy's facts."""

    def __init__(self, path: Path = CEDAR_FILE) -> None:
        self.policies = cedarpy.PolicySet.from_str(path.read_text(encoding="utf-8"))

    def decide(self, user: Facts, action: str, contract: Facts) -> bool:
        """Whether Cedar allows it; a Cedar evaluation error is a deny, as in Polar."""
        return self.authorize(user, action, contract).allowed

    def authorize(self, user: Facts, action: str, contract: Facts) -> cedarpy.AuthzResult:
        """Cedar's full answer (with its diagnostics) for these facts.

        The entities are built on every call, as a portal service would build them from the
        facts of each request. Cedar has no nil: "" stands for none (no real id is empty).
        """
        entities = [
            {
                "uid": _USER,
                "attrs": {
                    "found": user["found"],
                    "status": user["status"] or "",
                    "site_id": user["site_id"] or "",
                    "site_label": user["site_label"] or "",
                    "payments_enabled": user["payments_enabled"],
                },
                "parents": [],
            },
            {
                "uid": _CONTRACT,
                "attrs": {
                    "found": contract["found"],
                    "from_connected_source": contract["from_connected_source"],
                    "state": contract["state"] or "",
                    "private_label": contract["private_label"] or "",
                },
                "parents": [],
            },
        ]
        request = {
            "principal": _USER,
            "action": {"type": "Action", "id": action},
            "resource": _CONTRACT,
            "context": {"roles": contract["roles"], "via_site": user["via_site"] or ""},
        }
        return cedarpy.is_authorized(request, self.policies, entities)


def agreement(policy: Policy, cases: Iterable[Case], cedar: CedarDecider | None = None) -> int:
    """How many decisions Cedar and our policy took alike: all of them, or this raises.

    :raises AssertionError: naming the first few cases where the two disagree.
    """
    cedar = cedar or CedarDecider()
    count, wrong = 0, []
    for user, action, contract in cases:
        count += 1
        ours = policy.is_allowed(user, action, contract)
        theirs = cedar.authorize(user, action, contract)
        if ours != theirs.allowed:
            errors = theirs.diagnostics.errors
            wrong.append(
                f"ours={ours} cedar={theirs.allowed} {errors or ''} {action} {user} {contract}"
            )
    if wrong:
        shown = "\n  ".join(wrong[:5])
        raise AssertionError(
            f"Cedar and our policy disagree on {len(wrong)} of {count}:\n  {shown}"
        )
    return count


SOURCE = "aspire-prod"
LABELS = (None, "ACME", "SUMMIT")
STATES = ("pending", "active", "closed")
ROLE_SETS = tuple(
    frozenset(c) for n in range(4) for c in combinations(("Customer", "Guarantor", "Vendor"), n)
)
# An action the policy does not declare: both must deny it.
UNDECLARED = "cancel_contract"


def generated_cases(actions: Sequence[str], pairs: int = 800, seed: int = 20261126) -> list[Case]:
    """`pairs` random (user, contract) fact sets, each asked for every action and one the
    policy does not declare.

    Each fact starts from a value that allows and is drawn afresh from its whole domain one
    time in four, so the cases sit near the boundary: a mix of allowed and denied for every
    action, most denials failing one or two conditions.
    """
    rng = random.Random(seed)

    def pick(allowing: Any, domain: Sequence[Any]) -> Any:
        return allowing if rng.random() < 0.75 else rng.choice(domain)

    out: list[Case] = []
    for _ in range(pairs):
        label = rng.choice(LABELS)
        user = UserRecord(
            "u",
            pick("active", ("active", "disabled")),
            "site-a",
            "Site A",
            label,
            pick(True, (True, False)),
        )
        via = pick(rng.choice((None, "site-a")), (None, "site-a", "site-b"))
        ufacts = user_facts(user if pick(True, (True, False)) else None, via)
        contract = ContractRecord(
            "c",
            pick(SOURCE, (SOURCE, "aspire-test")),
            pick(rng.choice(("active", "closed")), STATES),
            pick(label, LABELS),
        )
        roles = pick(rng.choice([r for r in ROLE_SETS if r - {"Vendor"}]), ROLE_SETS)
        cfacts = contract_facts(contract if pick(True, (True, False)) else None, roles, SOURCE)
        out.extend((ufacts, action, cfacts) for action in (*actions, UNDECLARED))
    return out


def request_cases(rt: Runtime, requests: Sequence[CheckRequest]) -> list[Case]:
    """The facts our policy receives for these requests, read through the library."""
    user_ids = {r.user_id for r in requests}
    contract_ids = {r.contract_id for r in requests}
    with rt.db.read() as s:
        users = load_users(s, user_ids)
        contracts = load_contracts(s, contract_ids)
        roles = load_roles(s, user_ids, contract_ids)
    source = rt.settings.aspire_source
    return [
        (
            user_facts(users.get(r.user_id), r.site_id),
            r.action,
            contract_facts(
                contracts.get(r.contract_id), roles.get((r.user_id, r.contract_id), ()), source
            ),
        )
        for r in requests
    ]


def cedar_section(
    rt: Runtime, cases: dict[str, Any], report: Report, engine: str, calls: int
) -> None:
    """Ours beside Cedar on the decision cases of `bench.__main__.cases`, same facts."""

    requests = cases["allowed"] + cases["denied"]
    facts = request_cases(rt, requests)
    cedar = CedarDecider()
    agreed = agreement(rt.policy, facts, cedar)
    trivial = Oso()
    trivial.load_str('allow(_actor, "view", _resource);')
    where = "in-process, vs cedar"
    report.section(
        f"[{engine}] same rules, same facts: ours vs Cedar (cedarpy {version('cedarpy')}), ms",
        "oso floor",
    )

    # Each call draws a case as the other rows of the bench do; the draw costs the same in all.
    def pick() -> Case:
        return random.choice(facts)

    # Warm: the facts of every request remembered at the store's current version. The rows
    # before this section changed the data (the checks right after a change), which leaves
    # what was remembered at an older version; without this, most "warm" checks read facts.
    rt.decider.check_batch(requests)
    names = {
        "floor": "oso.is_allowed, trivial rule (floor)",
        "cedar": "cedar: is_authorized, entities built per call",
        "policy": "ours: Policy.is_allowed, same facts (warm, remembered)",
        # What Polar costs each time without that memory: Cedar keeps none.
        "polar": "ours: Polar evaluating allow, nothing remembered (oso.is_allowed)",
        "check": "ours: decider.check, warm (store's version read + policy + log)",
    }
    # Timed in alternating turns: the machine is shared, and a slow minute must not fall on
    # Cedar's rows or on ours alone.
    samples = timed_together(
        {
            "floor": lambda: trivial.is_allowed({}, "view", {}),
            "cedar": lambda: cedar.decide(*pick()),
            "policy": lambda: rt.policy.is_allowed(*pick()),
            "polar": lambda: rt.policy._oso.is_allowed(*pick()),
            "check": lambda: rt.decider.check(random.choice(requests)),
        },
        calls,
    )
    floor = report.add(engine, where, names["floor"], samples["floor"])
    theirs = report.add(engine, where, names["cedar"], samples["cedar"], floor)
    report.rows[-1]["agreed"] = agreed
    ours = {
        key: report.add(engine, where, names[key], samples[key], floor)
        for key in ("policy", "polar", "check")
    }
    report.rows[-4]["ratio_to_cedar"] = 1.0
    for row, p50 in zip(report.rows[-3:], ours.values(), strict=True):
        row["ratio_to_cedar"] = round(p50 / theirs, 2)
    allowed = len(cases["allowed"])
    print(f"  Cedar and our policy agree on all {agreed} decisions ({allowed} allowed)")
    for name, p50 in ours.items():
        print(f"  ratio {name}/cedar = {p50 / theirs:.2f}")
