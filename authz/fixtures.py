"""Policy fixtures: YAML suites of a small world and what the policy must decide in it.

The runner asks a one-method `Checker`; the same suites run against the library
(`LibraryTarget`) and, over HTTP, against a live service (`authz.fixtures_http.HttpTarget`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from authz.config import Settings
from authz.decisions import CheckRequest
from authz.errors import AuthzError
from authz.fixture_suite import (
    AccountFx,
    ContractFx,
    ExpectFx,
    Suite,
    WorldFx,
    load_suite,
    suite_paths,
)
from authz.policy import Policy
from authz.runtime import Runtime

# --- the checker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decide:
    user: str
    action: str
    contract: str
    site: str | None = None


@dataclass(frozen=True)
class Link:
    user: str
    account: str


@dataclass(frozen=True)
class ListContracts:
    user: str
    action: str


@dataclass(frozen=True)
class ListEligible:
    site: str


Question = Decide | Link | ListContracts | ListEligible


@dataclass(frozen=True)
class Answer:
    allowed: bool = False
    reasons: tuple[str, ...] = ()
    items: tuple[str, ...] = ()  # for a list: the ids, in the order listed
    conditions: tuple[tuple[str, bool], ...] = ()  # for a decision: each named condition


class Checker(Protocol):
    """The one thing the runner needs: an answer to a question."""

    def ask(self, question: Question) -> Answer: ...


class Target(Protocol):
    """Builds a suite's world somewhere and hands back a checker for it."""

    def world(self, world: WorldFx) -> AbstractContextManager[Checker]: ...


# --- running -------------------------------------------------------------------------------


@dataclass
class Failure:
    case: str
    expected: str
    got: str


@dataclass
class SuiteResult:
    path: str
    description: str
    cases: int = 0
    failures: list[Failure] = field(default_factory=list)
    # What the cases exercised: (condition, passed) and (action, allowed) pairs seen.
    conditions_seen: set[tuple[str, bool]] = field(default_factory=set)
    actions_seen: set[tuple[str, bool]] = field(default_factory=set)


def run_suite(
    suite: Suite, checker: Checker, actions: tuple[str, ...], path: str = ""
) -> SuiteResult:
    """Ask every case of the suite; pairs not listed as allowed are expected denied."""
    result = SuiteResult(path, suite.description)
    listed = {(e.user, e.contract, e.site) for e in suite.expect}
    expectations = list(suite.expect)
    contracts = {c.contract_id for c in suite.world.contracts + suite.world.later_contracts}
    for user in suite.world.users:
        for contract in sorted(contracts):
            if (user.user_id, contract, None) not in listed:
                expectations.append(ExpectFx(user=user.user_id, contract=contract))
    for e in expectations:
        for action in actions:
            want_allow = action in e.allow
            got = checker.ask(Decide(e.user, action, e.contract, e.site))
            name = f"{e.user} {action} {e.contract}" + (f" via {e.site}" if e.site else "")
            result.cases += 1
            result.conditions_seen.update(got.conditions)
            result.actions_seen.add((action, got.allowed))
            want_reasons = e.reasons.get(action)
            if got.allowed != want_allow:
                result.failures.append(
                    Failure(
                        name,
                        "allow" if want_allow else "deny",
                        ("allow" if got.allowed else f"deny {list(got.reasons)}"),
                    )
                )
            elif want_reasons is not None and list(got.reasons) != want_reasons:
                result.failures.append(
                    Failure(name, f"reasons {want_reasons}", f"{list(got.reasons)}")
                )
    for link in suite.links:
        result.cases += 1
        got = checker.ask(Link(link.user, link.account))
        name = f"link {link.account} to {link.user}"
        if got.allowed != link.allowed or (
            not link.allowed and link.reasons and list(got.reasons) != link.reasons
        ):
            result.failures.append(
                Failure(
                    name,
                    f"{'eligible' if link.allowed else 'refused'} {link.reasons}",
                    f"{'eligible' if got.allowed else 'refused'} {list(got.reasons)}",
                )
            )
    for expected in suite.lists:
        result.cases += 1
        if expected.contracts is not None and expected.user is not None:
            name = f"list of {expected.user} for {expected.action}"
            want = sorted(expected.contracts)
            got_items = checker.ask(ListContracts(expected.user, expected.action)).items
        elif expected.eligible_accounts is not None and expected.site is not None:
            name = f"eligible accounts of site {expected.site}"
            want = sorted(expected.eligible_accounts)
            got_items = checker.ask(ListEligible(expected.site)).items
        else:
            result.failures.append(
                Failure("list entry", "user+contracts or site+eligible_accounts", str(expected))
            )
            continue
        if sorted(got_items) != want:
            result.failures.append(Failure(name, str(want), str(sorted(got_items))))
    return result


def drain_pages(fetch: Any) -> tuple[str, ...]:
    """Every id of a paged list: `fetch(cursor)` answers (ids, next_cursor)."""
    items: list[str] = []
    cursor = None
    while True:
        ids, cursor = fetch(cursor)
        items += ids
        if cursor is None:
            return tuple(items)


# --- the library target --------------------------------------------------------------------


class LibraryChecker:
    """Answers from an in-process `Runtime`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def ask(self, question: Question) -> Answer:
        if isinstance(question, Decide):
            e = self.rt.decider.explain(
                CheckRequest(question.user, question.action, question.contract, question.site)
            )
            return Answer(
                e.decision.allowed,
                tuple(r.code for r in e.reasons),
                conditions=tuple((c.name, c.passed) for c in e.conditions),
            )
        lister = self.rt.lister
        if isinstance(question, ListContracts):
            return Answer(
                items=drain_pages(
                    lambda c: _ids(
                        lister.contracts(question.user, question.action, None, 1000, c),
                        "contract_id",
                    )
                )
            )
        if isinstance(question, ListEligible):
            return Answer(
                items=drain_pages(
                    lambda c: _ids(
                        lister.eligible_accounts(question.site, None, 1000, c), "account_id"
                    )
                )
            )
        user = self.rt.directory.get_user(question.user)
        if question.account in {a.account_id for a in user.linked_accounts}:
            return Answer(True)  # as POST link answers: an existing link stays
        site_id = user.site_id
        refusals = self.rt.directory.eligibility(site_id, question.account)
        return Answer(not refusals, tuple(r.code for r in refusals))


class LibraryTarget:
    """Builds each world in a fresh SQLite file, through the same sync and link paths."""

    def __init__(self, policy: Policy | Path, source: str = "aspire-prod") -> None:
        """`policy`: the loaded policy to test, or a directory to load it from once."""
        self.policy = policy if isinstance(policy, Policy) else Policy.load(policy)
        self.source = source

    @contextmanager
    def world(self, world: WorldFx) -> Iterator[LibraryChecker]:
        with tempfile.TemporaryDirectory(prefix="authz-fixture-") as tmp:
            settings = Settings(
                database_url=f"sqlite:///{tmp}/world.sqlite3",
                aspire_source=self.source,
            )
            rt = Runtime.open(settings, migrate=True, policy=self.policy)
            try:
                build_world(rt, world)
                yield LibraryChecker(rt)
            finally:
                rt.close()


def _ids(page: Any, key: str) -> tuple[list[str], str | None]:
    return [getattr(x, key) for x in page.items], page.next_cursor


def batch_payload(
    source: str, batch_id: str, at: datetime, accounts: list[AccountFx], contracts: list[ContractFx]
) -> dict[str, Any]:
    """A sync batch, as the ASPIRE sync job would send it, for a fixture world."""
    return {
        "source": source,
        "batch_id": batch_id,
        "extracted_at": at.isoformat(),
        "accounts": [
            {"account_id": a.account_id, "name": a.name or a.account_id} for a in accounts
        ],
        "contracts": [
            {
                "contract_id": c.contract_id,
                "private_label": c.private_label,
                "state": c.state,
                "booked_at": None if c.state == "pending" else at.isoformat(),
                "parties": [p.model_dump() for p in c.parties],
            }
            for c in contracts
        ],
    }


def build_world(rt: Runtime, world: WorldFx) -> None:
    """Sites, a first sync, users and their links (through R7), then the later sync."""
    from authz.replica import BatchIn

    now = datetime.now(UTC)
    for s in world.sites:
        rt.directory.put_site(
            s.site_id, s.name or s.site_id, s.private_label, s.payments_enabled, now
        )
    first = batch_payload(
        rt.settings.aspire_source,
        "fixture#1",
        now - timedelta(seconds=2),
        world.accounts,
        world.contracts,
    )
    rt.replica.apply(BatchIn.model_validate(first), now)
    for u in world.users:
        rt.directory.put_user(
            u.user_id, u.site_id, u.email or f"{u.user_id}@example.com", u.status, now
        )
        for account in u.accounts:
            rt.directory.link(u.user_id, account, now)
    if world.later_contracts:
        later = batch_payload(
            rt.settings.aspire_source,
            "fixture#2",
            now - timedelta(seconds=1),
            [],
            world.later_contracts,
        )
        rt.replica.apply(BatchIn.model_validate(later), now)


def run_paths(paths: list[Path], target: Target, actions: tuple[str, ...]) -> list[SuiteResult]:
    """Run every suite under `paths` against `target`."""
    results = []
    for path in suite_paths(paths):
        suite = load_suite(path)
        with ExitStack() as stack:
            try:
                checker = stack.enter_context(target.world(suite.world))
            except AuthzError as exc:
                # The world itself could not be built as the suite says (e.g. a link refused).
                failed = SuiteResult(str(path), suite.description, cases=1)
                failed.failures.append(Failure("build the world", "built", f"{exc.code}: {exc}"))
                results.append(failed)
                continue
            results.append(run_suite(suite, checker, actions, str(path)))
    return results


@dataclass(frozen=True)
class Coverage:
    """What the fixtures never showed: conditions not seen passing or failing, actions not
    seen allowed or denied."""

    conditions: dict[str, tuple[bool, bool]]  # name -> (seen passing, seen failing)
    actions: dict[str, tuple[bool, bool]]  # action -> (seen allowed, seen denied)

    @property
    def gaps(self) -> list[str]:
        out = [
            f"condition {n} never {'passed' if not p else 'failed'}"
            for n, (p, f) in self.conditions.items()
            if not (p and f)
        ]
        out += [
            f"action {a} never {'allowed' if not y else 'denied'}"
            for a, (y, n) in self.actions.items()
            if not (y and n)
        ]
        return out


def coverage(results: list[SuiteResult], policy: Any) -> Coverage:
    """Coverage of the policy's named conditions and actions by the suites' cases."""
    seen = set().union(*(r.conditions_seen for r in results)) if results else set()
    acted = set().union(*(r.actions_seen for r in results)) if results else set()
    names: list[str] = []
    for action in policy.actions:
        names += [c.name for c in policy.conditions(action) if c.name not in names]
    return Coverage(
        {n: ((n, True) in seen, (n, False) in seen) for n in names},
        {a: ((a, True) in acted, (a, False) in acted) for a in policy.actions},
    )
