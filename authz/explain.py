"""Plain-language details for the policy's named conditions, for support staff.

Nothing here decides: the policy says which condition passed; this module only words
the facts behind each one (labels, linked accounts and their roles, the last sync).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from authz.facts import ContractRecord, LinkedAccountRoles, UserRecord
from authz.state import Freshness


@dataclass(frozen=True)
class ExplainContext:
    user_id: str
    contract_id: str
    action: str
    via_site: str | None
    via_site_exists: bool
    user: UserRecord | None
    contract: ContractRecord | None
    linked: list[LinkedAccountRoles]
    granting_roles: tuple[str, ...]
    source: str
    freshness: Freshness
    sync_interval_seconds: int
    now: datetime


def detail(name: str, ctx: ExplainContext, passed: bool) -> str:
    """The sentence for one named condition; a condition unknown here still gets one."""
    words = _DETAILS.get(name)
    if words is None:
        return f"condition '{name}' {'holds' if passed else 'does not hold'}"
    return words(ctx, passed)


def sync_sentence(ctx: ExplainContext) -> str:
    """When the replica was last fed, and whether recent ASPIRE data may be missing (R8)."""
    f = ctx.freshness
    if f.extracted_at is None or f.last_synced_at is None:
        return "No ASPIRE data has been synced into this service yet."
    age = f.age_seconds(ctx.now) or 0.0
    text = (
        f"The replica was last synced at {_iso(f.last_synced_at)} with data extracted from "
        f"ASPIRE at {_iso(f.extracted_at)} ({age:.0f} s ago); anything booked or changed in "
        "ASPIRE after that may not have arrived yet."
    )
    if age > ctx.sync_interval_seconds:
        text += (
            f" That is older than the {ctx.sync_interval_seconds} s sync interval: "
            "the sync may be behind."
        )
    return text


def label_words(label: str | None) -> str:
    return "no private label" if label is None else f"private label '{label}'"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _site(ctx: ExplainContext) -> str:
    assert ctx.user is not None
    return f"site '{ctx.user.site_id}' ({ctx.user.site_name})"


def _user_exists(ctx: ExplainContext, passed: bool) -> str:
    if passed:
        return f"user '{ctx.user_id}' is registered on {_site(ctx)}"
    return (
        f"no user '{ctx.user_id}' is registered in this service; "
        "an administrator must create the user on their site first"
    )


def _contract_exists(ctx: ExplainContext, passed: bool) -> str:
    c = ctx.contract
    if passed:
        return f"contract '{ctx.contract_id}' is in the replica of ASPIRE source '{ctx.source}'"
    if c is not None and c.source != ctx.source:
        return (
            f"contract '{ctx.contract_id}' came from ASPIRE source '{c.source}', not from the "
            f"connected source '{ctx.source}'; only the connected source counts"
        )
    return (
        f"contract '{ctx.contract_id}' is not in the replica of ASPIRE source '{ctx.source}'. "
        + sync_sentence(ctx)
    )


def _contract_booked(ctx: ExplainContext, passed: bool) -> str:
    state = ctx.contract.state if ctx.contract else None
    if passed:
        return f"contract '{ctx.contract_id}' is booked ({state})"
    if state is None:
        return f"contract '{ctx.contract_id}' is not in the replica, so it is not known as booked"
    return (
        f"contract '{ctx.contract_id}' is {state}: it is not booked yet (a quote, application "
        "or approved deal), and only booked contracts, active or closed, are visible. "
        + sync_sentence(ctx)
    )


def _held(ctx: ExplainContext) -> str:
    parts = [
        f"{a.account_id} ({a.name}): {', '.join(a.roles) if a.roles else 'no role on it'}"
        for a in ctx.linked
    ]
    return "; ".join(parts)


def _party_role(ctx: ExplainContext, passed: bool) -> str:
    granting = ", ".join(ctx.granting_roles) or "none"
    if passed:
        return (
            f"the user's linked accounts hold a role granting '{ctx.action}' on contract "
            f"'{ctx.contract_id}': {_held(ctx)}"
        )
    if not ctx.linked:
        return (
            f"user '{ctx.user_id}' has no linked ASPIRE accounts; an account that is "
            f"{granting} on contract '{ctx.contract_id}' must be linked to the user"
        )
    return (
        f"none of the user's linked accounts holds a role granting '{ctx.action}' on contract "
        f"'{ctx.contract_id}' (roles that do: {granting}). Linked accounts: {_held(ctx)}. "
        + sync_sentence(ctx)
    )


def _private_label(ctx: ExplainContext, passed: bool) -> str:
    contract_label = label_words(ctx.contract.private_label if ctx.contract else None)
    site_label = label_words(ctx.user.site_label) if ctx.user else "an unknown label"
    site = _site(ctx) if ctx.user else "an unknown site"
    verb = "matches" if passed else "does not match"
    return (
        f"contract '{ctx.contract_id}' is under {contract_label}, which {verb} the user's "
        f"{site}, mapped to {site_label}"
    )


def _user_active(ctx: ExplainContext, passed: bool) -> str:
    if passed:
        return f"user '{ctx.user_id}' is active"
    return f"user '{ctx.user_id}' is disabled, and a disabled user is denied everything"


def _request_site(ctx: ExplainContext, passed: bool) -> str:
    if ctx.via_site is None:
        return "the caller did not name the site the request came through"
    own = f"user '{ctx.user_id}' belongs to {_site(ctx)}" if ctx.user else "the user is unknown"
    if passed:
        return f"the request came through site '{ctx.via_site}', the user's own site"
    if not ctx.via_site_exists:
        return f"the request came through site '{ctx.via_site}', which does not exist; {own}"
    return f"the request came through site '{ctx.via_site}', but {own}"


def _not_closed(ctx: ExplainContext, passed: bool) -> str:
    state = ctx.contract.state if ctx.contract else "unknown"
    if passed:
        return f"contract '{ctx.contract_id}' is not closed ({state})"
    return (
        f"contract '{ctx.contract_id}' is closed; '{ctx.action}' needs an active contract "
        "(closed contracts can still be viewed)"
    )


def _payments(ctx: ExplainContext, passed: bool) -> str:
    site = _site(ctx) if ctx.user else "the user's site"
    if passed:
        return f"payments are switched on for {site}"
    return f"payments are switched off for {site}, so '{ctx.action}' is not offered there"


_DETAILS: dict[str, Callable[[ExplainContext, bool], str]] = {
    "user_exists": _user_exists,
    "contract_exists": _contract_exists,
    "contract_booked": _contract_booked,
    "party_role_grants_action": _party_role,
    "private_label_matches": _private_label,
    "user_active": _user_active,
    "request_from_user_site": _request_site,
    "contract_not_closed": _not_closed,
    "payments_enabled": _payments,
}
