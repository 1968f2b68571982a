"""Facts for the policy, read from the store in a fixed number of queries per request."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from authz.models import (
    Account,
    Contract,
    ContractParty,
    ServiceState,
    Site,
    User,
    UserAccount,
)
from authz.policy import Facts


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    status: str
    site_id: str
    site_name: str
    site_label: str | None
    payments_enabled: bool


@dataclass(frozen=True)
class ContractRecord:
    contract_id: str
    source: str
    state: str
    private_label: str | None


@dataclass(frozen=True)
class LinkedAccountRoles:
    """A linked account of a user and the role types it holds on one contract."""

    account_id: str
    name: str
    roles: tuple[str, ...]


# The columns of a `UserRecord`, in its field order (users joined to their site).
USER_COLUMNS = (
    User.user_id,
    User.status,
    User.site_id,
    Site.name,
    Site.private_label,
    Site.payments_enabled,
)


@dataclass(frozen=True)
class DecisionFacts:
    """Everything a batch of decisions reads, from one snapshot."""

    data_version: int
    users: dict[str, UserRecord]
    contracts: dict[str, ContractRecord]
    roles: dict[tuple[str, str], set[str]]


def _text(n: int) -> list[Any]:
    return [cast(null(), String)] * n


def _decision_facts(many: bool) -> Any:
    """One statement, so one round trip and one snapshot: the data version (kind 0), the
    users with their site (1), the contracts (2), and the role types the users' linked
    accounts hold on them (3), as rows of one shape. `many`: lists of ids (a batch);
    otherwise one user and one contract, which is cheaper to bind."""

    def match(column: Any, name: str) -> Any:
        return column.in_(bindparam(name, expanding=True)) if many else column == bindparam(name)

    return union_all(
        select(literal(0), *_text(5), ServiceState.data_version).where(ServiceState.id == 1),
        select(literal(1), *USER_COLUMNS[:5], cast(Site.payments_enabled, Integer))
        .join(Site, Site.site_id == User.site_id)
        .where(match(User.user_id, "users")),
        select(
            literal(2),
            Contract.contract_id,
            Contract.source,
            Contract.state,
            Contract.private_label,
            *_text(1),
            cast(null(), Integer),
        ).where(match(Contract.contract_id, "contracts")),
        select(
            literal(3),
            UserAccount.user_id,
            ContractParty.contract_id,
            ContractParty.role_type,
            *_text(2),
            cast(null(), Integer),
        )
        .join(ContractParty, ContractParty.account_id == UserAccount.account_id)
        .where(match(UserAccount.user_id, "users"), match(ContractParty.contract_id, "contracts")),
    )


DECISION_FACTS = {True: _decision_facts(True), False: _decision_facts(False)}


def load_decision_facts(
    conn: Connection, user_ids: Collection[str], contract_ids: Collection[str]
) -> DecisionFacts:
    """The facts of decisions about these users and contracts, in one statement."""
    version = 0
    users: dict[str, UserRecord] = {}
    contracts: dict[str, ContractRecord] = {}
    roles: dict[tuple[str, str], set[str]] = defaultdict(set)
    many = len(user_ids) != 1 or len(contract_ids) != 1
    params: dict[str, Any] = (
        {"users": list(user_ids), "contracts": list(contract_ids)}
        if many
        else {"users": next(iter(user_ids)), "contracts": next(iter(contract_ids))}
    )
    for kind, a, b, c, d, e, n in conn.execute(DECISION_FACTS[many], params):
        if kind == 1:
            users[a] = UserRecord(a, b, c, d, e, bool(n))
        elif kind == 2:
            contracts[a] = ContractRecord(a, b, c, d)
        elif kind == 3:
            roles[(a, b)].add(c)
        else:
            version = int(n)
    return DecisionFacts(version, users, contracts, roles)


def load_users(session: Session, user_ids: Collection[str]) -> dict[str, UserRecord]:
    """The users with their site, in one query."""
    rows = session.execute(
        select(*USER_COLUMNS)
        .join(Site, Site.site_id == User.site_id)
        .where(User.user_id.in_(list(user_ids)))
    )
    return {r[0]: UserRecord(*r) for r in rows}


def load_contracts(session: Session, contract_ids: Collection[str]) -> dict[str, ContractRecord]:
    """The contracts, in one query."""
    rows = session.execute(
        select(Contract.contract_id, Contract.source, Contract.state, Contract.private_label).where(
            Contract.contract_id.in_(list(contract_ids))
        )
    )
    return {r[0]: ContractRecord(*r) for r in rows}


def load_roles(
    session: Session, user_ids: Collection[str], contract_ids: Collection[str]
) -> dict[tuple[str, str], set[str]]:
    """Role types the users' linked accounts hold on the contracts, keyed by (user, contract)."""
    rows = session.execute(
        select(UserAccount.user_id, ContractParty.contract_id, ContractParty.role_type)
        .join(ContractParty, ContractParty.account_id == UserAccount.account_id)
        .where(
            UserAccount.user_id.in_(list(user_ids)),
            ContractParty.contract_id.in_(list(contract_ids)),
        )
    )
    roles: dict[tuple[str, str], set[str]] = defaultdict(set)
    for user_id, contract_id, role in rows:
        roles[(user_id, contract_id)].add(role)
    return roles


def load_linked_roles(session: Session, user_id: str, contract_id: str) -> list[LinkedAccountRoles]:
    """Each linked account of the user with the roles it holds on the contract."""
    rows = session.execute(
        select(UserAccount.account_id, Account.name, ContractParty.role_type)
        .join(Account, Account.account_id == UserAccount.account_id)
        .outerjoin(
            ContractParty,
            and_(
                ContractParty.account_id == UserAccount.account_id,
                ContractParty.contract_id == contract_id,
            ),
        )
        .where(UserAccount.user_id == user_id)
        .order_by(UserAccount.account_id, ContractParty.role_type)
    )
    grouped: dict[tuple[str, str], list[str]] = {}
    for account_id, name, role in rows:
        grouped.setdefault((account_id, name), [])
        if role is not None:
            grouped[(account_id, name)].append(role)
    return [LinkedAccountRoles(a, n, tuple(r)) for (a, n), r in grouped.items()]


def user_facts(user: UserRecord | None, via_site: str | None) -> Facts:
    """What the policy reads about the asking user."""
    if user is None:
        return {
            "found": False,
            "status": None,
            "site_id": None,
            "site_label": None,
            "payments_enabled": False,
            "via_site": via_site,
        }
    return {
        "found": True,
        "status": user.status,
        "site_id": user.site_id,
        "site_label": user.site_label,
        "payments_enabled": user.payments_enabled,
        "via_site": via_site,
    }


def contract_facts(contract: ContractRecord | None, roles: Collection[str], source: str) -> Facts:
    """What the policy reads about the contract as seen by one user."""
    if contract is None:
        return {
            "found": False,
            "from_connected_source": False,
            "state": None,
            "private_label": None,
            "roles": [],
        }
    return {
        "found": True,
        "from_connected_source": contract.source == source,
        "state": contract.state,
        "private_label": contract.private_label,
        "roles": sorted(roles),
    }


@dataclass(frozen=True)
class Holding:
    role: str
    state: str
    label: str | None
    contracts: int


def load_holdings(session: Session, account_id: str, source: str) -> list[Holding] | None:
    """The account's distinct (role, state, label) over its contracts; None when not held."""
    held = session.execute(
        select(Account.source).where(Account.account_id == account_id)
    ).scalar_one_or_none()
    if held != source:
        return None
    rows = session.execute(
        select(ContractParty.role_type, Contract.state, Contract.private_label, func.count())
        .join(Contract, Contract.contract_id == ContractParty.contract_id)
        .where(ContractParty.account_id == account_id, Contract.source == source)
        .group_by(ContractParty.role_type, Contract.state, Contract.private_label)
    )
    return sorted((Holding(*r) for r in rows), key=lambda h: (h.role, h.state, h.label or ""))


def account_facts(holdings: list[Holding] | None) -> Facts:
    """What the policy reads about an account for link eligibility (R7)."""
    if holdings is None:
        return {"found": False, "holdings": []}
    return {
        "found": True,
        "holdings": [{"role": h.role, "state": h.state, "label": h.label} for h in holdings],
    }
