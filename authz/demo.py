"""A realistic demo world, built through the same sync and link paths as production data."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authz.decisions import CheckRequest
from authz.errors import Refused
from authz.replica import BatchIn
from authz.runtime import Runtime

SITES = [
    ("default", "Customer Portal", None, True),
    ("summit", "Summit Equipment Finance", "SUMMIT", True),
    ("harbor", "Harbor Marine Lending", "HARBOR", False),
]
LABELS = [(None, 0.5), ("SUMMIT", 0.3), ("HARBOR", 0.2)]
STATES = [("pending", 0.15), ("active", 0.6), ("closed", 0.25)]
NAME_A = [
    "Acme",
    "Blue Ridge",
    "Cedar",
    "Delta",
    "Evergreen",
    "Frontier",
    "Granite",
    "Harbor",
    "Iron Horse",
    "Juniper",
    "Keystone",
    "Lakeside",
    "Midland",
    "Northstar",
    "Oakwood",
    "Pioneer",
    "Quarry",
    "Redwood",
    "Summit",
    "Tri-County",
    "Union",
    "Valley",
    "Westfield",
]
NAME_B = [
    "Trucking",
    "Construction",
    "Logistics",
    "Farms",
    "Medical Group",
    "Paving",
    "Excavating",
    "Marine",
    "Dental",
    "Printing",
    "Landscaping",
    "Bakery",
    "Freight",
]
NAME_C = ["LLC", "Inc", "Co", "Corp", "Ltd", "LP"]
PEOPLE = [
    "James Carter",
    "Maria Lopez",
    "Robert Chen",
    "Linda Okafor",
    "David Novak",
    "Susan Patel",
    "Michael Byrne",
    "Karen Walsh",
    "Thomas Reyes",
    "Nancy Kim",
]


@dataclass(frozen=True)
class DemoSize:
    accounts: int = 2_000
    contracts: int = 10_000
    users: int = 200
    batch: int = 5_000
    seed: int = 7


def _pick(rng: random.Random, weighted: list[tuple[Any, float]]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def account_name(rng: random.Random, i: int) -> str:
    if i % 5 == 4:
        return rng.choice(PEOPLE)
    return f"{rng.choice(NAME_A)} {rng.choice(NAME_B)} {rng.choice(NAME_C)}"


def records(
    size: DemoSize, now: datetime, rng: random.Random | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """ASPIRE accounts and contracts as the sync job sends them, and the largest fleet lessee."""
    rng = rng or random.Random(size.seed)
    accounts = [
        {
            "account_id": f"{1_000_000 + i:07d}",
            "name": account_name(rng, i),
            "email": f"ap{i}@customer.example",
        }
        for i in range(size.accounts)
    ]
    # Fleet lessees hold many contracts, as real portfolios do; the first holds about 2% of
    # all of them (20,000 at a million contracts).
    fleet = [a["account_id"] for a in accounts[: max(1, size.accounts // 500)]]
    largest = fleet[0]
    contracts = []
    for n in range(size.contracts):
        kind = "LS" if rng.random() < 0.7 else "LN"
        state = _pick(rng, STATES)
        draw = rng.random()
        customer = (
            largest
            if draw < 0.02
            else rng.choice(fleet)
            if draw < 0.06
            else rng.choice(accounts)["account_id"]
        )
        parties = [{"account_id": customer, "role_type": "Customer"}]
        for role, p in (("Guarantor", 0.3), ("Co-Lessee", 0.1), ("Vendor", 0.15), ("Broker", 0.05)):
            if rng.random() < p:
                other = rng.choice(accounts)["account_id"]
                if other != customer:
                    parties.append({"account_id": other, "role_type": role})
        booked = None if state == "pending" else (now - timedelta(days=rng.randint(30, 2500)))
        contracts.append(
            {
                "contract_id": f"{kind}-{n + 100_001:07d}-{rng.randint(1, 3):03d}",
                "private_label": _pick(rng, LABELS),
                "state": state,
                "booked_at": booked.isoformat() if booked else None,
                "parties": parties,
            }
        )
    return accounts, contracts, largest


def build(rt: Runtime, size: DemoSize, say: Callable[[str], None] = print) -> None:
    """Sites, accounts and contracts by sync batches, then users linked through R7."""
    rng = random.Random(size.seed)
    now = datetime.now(UTC)
    for site_id, name, label, payments in SITES:
        rt.directory.put_site(site_id, name, label, payments, now)
    accounts, contracts, largest = records(size, now, rng)
    extracted = now - timedelta(minutes=2)
    for start in range(0, max(len(contracts), 1), size.batch):
        chunk = contracts[start : start + size.batch]
        batch = BatchIn.model_validate(
            {
                "source": rt.settings.aspire_source,
                "batch_id": f"demo-{now:%Y%m%dT%H%M%S}#{start // size.batch + 1}",
                "extracted_at": extracted.isoformat(),
                "accounts": accounts if start == 0 else [],
                "contracts": chunk,
            }
        )
        rt.replica.apply(batch, now)
    say(f"synced {len(accounts)} accounts and {len(contracts)} contracts")
    _link_users(rt, rng, contracts, size.users, now, say, largest)


def _link_users(
    rt: Runtime,
    rng: random.Random,
    contracts: list[dict[str, Any]],
    count: int,
    now: datetime,
    say: Callable[[str], None],
    largest: str,
) -> None:
    by_label: dict[str | None, list[str]] = {}
    for c in contracts:
        if c["state"] == "active":
            for p in c["parties"]:
                if p["role_type"] in ("Customer", "Guarantor"):
                    by_label.setdefault(c["private_label"], []).append(p["account_id"])
    linked = 0
    for i in range(count):
        site_id, _, label, _ = SITES[i % len(SITES)]
        status = "disabled" if i % 25 == 24 else "active"
        candidates = by_label.get(label) or []
        picked = rng.sample(candidates, min(len(candidates), 1 + (i % 3 == 0)))
        if i == count - 1:  # the last user manages the largest fleet, on the default site
            site_id, status, picked = "default", "active", [largest]
        user_id = f"user-{i + 1:04d}"
        rt.directory.put_user(user_id, site_id, f"{user_id}@portal.example", status, now)
        for account in picked:
            try:
                rt.directory.link(user_id, account, now)
                linked += 1
            except Refused:
                pass
    say(f"created {count} users with {linked} links on {len(SITES)} sites")
    example = _example(rt, contracts)
    if example:
        say(f"for instance, {example[0]} may view contract {example[1]}")


def _example(rt: Runtime, contracts: list[dict[str, Any]]) -> tuple[str, str] | None:
    """A user and a contract the policy allows them to view, to try the API with."""
    user = rt.directory.get_user("user-0001")
    mine = {a.account_id for a in user.linked_accounts}
    for c in contracts:
        if mine & {p["account_id"] for p in c["parties"]}:
            request = CheckRequest(user.user_id, "view", c["contract_id"])
            if rt.decider.check(request).allowed:
                return user.user_id, c["contract_id"]
    return None
