"""The Polar policy: loading it, its version, and asking it decisions and named conditions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oso import Oso, Variable
from polar.exceptions import OsoError

from authz.errors import FieldError, PolicyLoadError

Facts = dict[str, Any]
FrozenFacts = tuple[Any, ...]
X = Variable("x")
# Distinct fact sets whose answers a Policy keeps; past it, it starts afresh.
MAX_REMEMBERED = 100_000


@dataclass(frozen=True)
class PolicyFile:
    path: str
    sha256: str
    source: str


@dataclass(frozen=True)
class Condition:
    """A named condition of the policy and the reason code its failure gives."""

    name: str
    code: str


class Policy:
    """A loaded policy. Immutable once built; a new version is a new `Policy`."""

    def __init__(self, files: list[PolicyFile]) -> None:
        self.files = sorted(files, key=lambda f: f.path)
        self.version = policy_version(self.files)
        self._oso = Oso()
        try:
            self._oso.load_str("\n".join(f.source for f in self.files))
        except OsoError as exc:
            raise PolicyLoadError(f"the policy does not compile: {exc}") from exc
        self.actions: tuple[str, ...] = tuple(self._values("action", X))
        if not self.actions:
            raise PolicyLoadError("the policy declares no action/1")
        self.party_roles: tuple[str, ...] = tuple(self._values("party_role", X))
        self._conditions = {a: self._load_conditions(a) for a in self.actions}
        self.reported_alone = frozenset(self._values("reported_alone", X))
        self.link_conditions = tuple(
            Condition(r["n"], r["c"])
            for r in self._query("link_condition", Variable("n"), Variable("c"))
        )
        self._grants = {a: tuple(sorted(self._values("role_grants", X, a))) for a in self.actions}
        self._answers: dict[tuple[Any, ...], bool] = {}
        self._codes: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._errors = 0  # answers not remembered because Polar raised

    @classmethod
    def load(cls, directory: Path) -> Policy:
        """Read every `*.polar` file under `directory`.

        :raises PolicyLoadError: when there is none, or one does not compile.
        """
        paths = sorted(directory.glob("*.polar"))
        if not paths:
            raise PolicyLoadError(f"no .polar files in {directory}")
        files = []
        for path in paths:
            data = path.read_bytes()
            files.append(
                PolicyFile(path.name, hashlib.sha256(data).hexdigest(), data.decode("utf-8"))
            )
        return cls(files)

    def is_allowed(
        self,
        user: Facts,
        action: str,
        contract: Facts,
        frozen: tuple[FrozenFacts, FrozenFacts] | None = None,
    ) -> bool:
        """The policy's `allow` rule; any error inside it is a deny.

        The rule is a function of the facts it is given and nothing else, and a `Policy`
        never changes (a new version is a new `Policy`): so each answer is remembered by its
        whole input, and Polar runs once per distinct set of facts, not once per request.
        Facts are coarse (a status, a state, labels, role types), so there are few such sets.
        An error is a deny now and is not remembered. `frozen`: `(frozen(user),
        frozen(contract))` when the caller keeps them, so they are not built again.
        """
        if frozen is None:
            frozen = (freeze(user), freeze(contract))
        return self._remembered(
            ("allow", action, *frozen),
            lambda: self._oso.is_allowed(user, action, contract),
        )

    def _remembered(self, key: tuple[Any, ...], ask: Callable[[], Any]) -> bool:
        """The answer of `ask` for `key`, asked once; an error is False and not remembered."""
        try:
            found = self._answers.get(key)
        except TypeError:  # facts that cannot be a key (dicts in lists) are asked every time
            return self._ask(ask)
        if found is not None:
            return found
        try:
            answer = bool(ask())
        except OsoError:
            self._errors += 1
            return False
        if len(self._answers) >= MAX_REMEMBERED:
            self._answers.clear()
        self._answers[key] = answer
        return answer

    @staticmethod
    def _ask(ask: Callable[[], Any]) -> bool:
        try:
            return bool(ask())
        except OsoError:
            return False

    def conditions(self, action: str) -> tuple[Condition, ...]:
        """The named conditions that apply to `action`, in the policy's order."""
        return self._conditions.get(action, ())

    def holds(self, name: str, *args: Any) -> bool:
        """Whether the named condition holds for these facts (remembered as `is_allowed`
        answers are); an error counts as failed."""
        key = (name, *(freeze(a) if isinstance(a, dict) else a for a in args))
        return self._remembered(key, lambda: self._oso.query_rule_once(name, *args))

    def evaluate(self, user: Facts, action: str, contract: Facts) -> list[tuple[Condition, bool]]:
        """Every named condition that applies to `action`, in order, with whether it holds."""
        return [(c, self.holds(c.name, user, action, contract)) for c in self.conditions(action)]

    def reported(self, evaluated: list[tuple[Condition, bool]]) -> list[Condition]:
        """The failed conditions a denial gives as reasons: a failed `reported_alone` condition
        (an unknown user or contract) hides the others."""
        failed = [c for c, passed in evaluated if not passed]
        return [c for c in failed if c.name in self.reported_alone] or failed

    def denial_codes(
        self,
        user: Facts,
        action: str,
        contract: Facts,
        frozen: tuple[FrozenFacts, FrozenFacts] | None = None,
    ) -> tuple[str, ...]:
        """The codes of the conditions a deny of these facts reports, in order; remembered by
        the whole input as answers are (the decision log asks this of every deny), except
        when a condition raised. `frozen` as for `is_allowed`."""
        if frozen is None:
            frozen = (freeze(user), freeze(contract))
        try:
            key = (action, *frozen)
            found = self._codes.get(key)
        except TypeError:
            key, found = None, None
        if found is not None:
            return found
        errors = self._errors
        found = tuple(c.code for c in self.reported(self.evaluate(user, action, contract)))
        if key is not None and self._errors == errors:
            if len(self._codes) >= MAX_REMEMBERED:
                self._codes.clear()
            self._codes[key] = found
        return found

    def unknown_action(self, action: str, field: str = "action") -> FieldError | None:
        """The error for an action the policy does not declare, or None when it does."""
        if action in self.actions:
            return None
        return FieldError(field, f"unknown action '{action}'; valid actions: {self.valid_actions}")

    @property
    def valid_actions(self) -> str:
        return ", ".join(self.actions)

    def roles_granting(self, action: str) -> tuple[str, ...]:
        """The role types that grant `action`, as the policy says."""
        return self._grants.get(action, ())

    def link_eligible(self, account: Facts, site: Facts) -> bool:
        """The policy's R7 rule `link_eligible`; any error is a refusal."""
        return self.holds("link_eligible", account, site)

    def _load_conditions(self, action: str) -> tuple[Condition, ...]:
        rows = self._query("condition", Variable("n"), Variable("c"), action)
        return tuple(Condition(r["n"], r["c"]) for r in rows)

    def _values(self, rule: str, *args: Any) -> list[Any]:
        """Distinct values of the variable `x` over the results of `rule(*args)`, in order."""
        seen: list[Any] = []
        for row in self._query(rule, *args):
            if row["x"] not in seen:
                seen.append(row["x"])
        return seen

    def _query(self, rule: str, *args: Any) -> list[dict[str, Any]]:
        return [r["bindings"] for r in self._oso.query_rule(rule, *args, accept_expression=False)]


def freeze(facts: Facts) -> FrozenFacts:
    """Facts as a dictionary key (their lists as tuples)."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in facts.items())


def policy_version(files: list[PolicyFile]) -> str:
    """sha256 over the policy files' bytes, in path order, whatever order they were read in."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f.path.encode())
        digest.update(b"\0")
        digest.update(f.source.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()
