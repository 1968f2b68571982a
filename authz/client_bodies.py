"""Reading the bodies of 200 answers into `authz.client_results`, strictly: a member of
the wrong JSON type (a string "true" for `allowed`) is a `_BadBody`, never a result."""

from __future__ import annotations

from typing import Any, TypeVar

from authz.client_results import (
    AccountsPage,
    BatchDecision,
    Condition,
    ContractsPage,
    Decision,
    EligibleAccount,
    Explanation,
    ListedContract,
    Reason,
    _BadBody,
)

T = TypeVar("T")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _BadBody(f"{where}: expected an object")
    return value


def _field(obj: dict[str, Any], name: str, kind: type[T], where: str) -> T:
    """A member of exactly JSON type `kind` (a bool is not an int, a string is not a bool)."""
    if name not in obj:
        raise _BadBody(f"{where}.{name} is missing")
    value = obj[name]
    if type(value) is not kind:
        raise _BadBody(f"{where}.{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _opt_str(obj: dict[str, Any], name: str, where: str) -> str | None:
    """A member that must be present, as a string or null."""
    if obj.get(name, "") is None:
        return None
    return _field(obj, name, str, where)


def _list(obj: dict[str, Any], name: str, where: str) -> list[Any]:
    return _field(obj, name, list, where)


def _decision(raw: Any, where: str) -> dict[str, Any]:
    o = _obj(raw, where)
    return {
        "allowed": _field(o, "allowed", bool, where) is True,
        "decision_id": _field(o, "decision_id", str, where),
        "policy_version": _field(o, "policy_version", str, where),
        "data_version": _field(o, "data_version", int, where),
    }


def _read_decision(raw: Any) -> Decision:
    return Decision(**_decision(raw, "body"))


def _read_batch_item(raw: Any, where: str) -> BatchDecision:
    correlation_id = _opt_str(_obj(raw, where), "correlation_id", where)
    return BatchDecision(**_decision(raw, where), correlation_id=correlation_id)


def _read_condition(raw: Any, where: str) -> Condition:
    o = _obj(raw, where)
    return Condition(
        _field(o, "name", str, where),
        _field(o, "passed", bool, where),
        _field(o, "detail", str, where),
    )


def _read_reason(raw: Any, where: str) -> Reason:
    o = _obj(raw, where)
    return Reason(_field(o, "code", str, where), _field(o, "message", str, where))


def _read_explanation(raw: Any) -> Explanation:
    o = _obj(raw, "body")
    conditions = _list(o, "conditions", "body")
    reasons = _list(o, "reasons", "body")
    explained = Explanation(
        **_decision(o, "body"),
        conditions=tuple(_read_condition(c, f"conditions[{i}]") for i, c in enumerate(conditions)),
        reasons=tuple(_read_reason(r, f"reasons[{i}]") for i, r in enumerate(reasons)),
    )
    if explained.allowed and explained.reasons:
        raise _BadBody("an allow that gives reasons for a deny")
    return explained


def _read_contract(raw: Any, where: str) -> ListedContract:
    o = _obj(raw, where)
    roles = _list(o, "roles", where)
    if not all(type(r) is str for r in roles):
        raise _BadBody(f"{where}.roles: expected strings")
    return ListedContract(
        contract_id=_field(o, "contract_id", str, where),
        state=_field(o, "state", str, where),
        private_label=_opt_str(o, "private_label", where),
        roles=tuple(roles),
    )


def _read_account(raw: Any, where: str) -> EligibleAccount:
    o = _obj(raw, where)
    return EligibleAccount(_field(o, "account_id", str, where), _field(o, "name", str, where))


def _read_contracts_page(raw: Any) -> ContractsPage:
    o = _obj(raw, "body")
    items = _list(o, "contracts", "body")
    return ContractsPage(
        tuple(_read_contract(c, f"contracts[{i}]") for i, c in enumerate(items)),
        _opt_str(o, "next_cursor", "body"),
    )


def _read_accounts_page(raw: Any) -> AccountsPage:
    o = _obj(raw, "body")
    items = _list(o, "accounts", "body")
    return AccountsPage(
        tuple(_read_account(a, f"accounts[{i}]") for i, a in enumerate(items)),
        _opt_str(o, "next_cursor", "body"),
    )
