"""Lists that agree with the policy: a user's contracts and a site's eligible accounts.

The SQL is derived from the policy, not written beside it: for the asking user (or site),
the policy is asked about every *shape* a row can have (contract state x party role type x
how its label relates to the site's), and the shapes it allows become the WHERE clause.
The policy reads a contract's roles existentially (one granting role suffices), so
single-role shapes are exact; a property test (tests/authz/test_listing_property.py) proves
on random worlds that each list equals the set its checks allow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    union,
)
from sqlalchemy.orm import Session

from authz.config import Settings
from authz.db import Database
from authz.enums import ContractState
from authz.errors import FieldError, InvalidInput, NotFound, require_version
from authz.facts import USER_COLUMNS, UserRecord, user_facts
from authz.models import (
    Account,
    AccountTerm,
    Contract,
    ContractParty,
    RoleType,
    ServiceState,
    Site,
    User,
    UserAccount,
)
from authz.paging import DEFAULT_LIMIT, Page, clamp, decode_cursor, encode_cursor
from authz.policy import Policy
from authz.search import query_term
from authz.state import read_freshness

# A label no site is mapped to: stands for "some other label" when asking the policy.
OTHER_LABEL = "\x00another label"
TOP = "\U0010ffff"  # sorts after any other character, bytewise in UTF-8
SEP = "\x1f"  # joins role types in one string; ASPIRE ids hold no control characters

Shape = tuple[str, str, str]  # (state, role type, label kind)


# The data version, then the user with their site, linked accounts and every role type
# known (no user: one row of NULLs after the version). Built once.
USER_CONTEXT = (
    select(
        ServiceState.data_version,
        *USER_COLUMNS,
        UserAccount.account_id,
        select(func.aggregate_strings(RoleType.role_type, SEP)).scalar_subquery(),
    )
    .select_from(ServiceState)
    .outerjoin(User, User.user_id == bindparam("user_id"))
    .outerjoin(Site, Site.site_id == User.site_id)
    .outerjoin(UserAccount, UserAccount.user_id == User.user_id)
    .where(ServiceState.id == 1)
)


@dataclass(frozen=True)
class ListedContract:
    contract_id: str
    state: str
    private_label: str | None
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ListedAccount:
    account_id: str
    name: str


def label_kinds(site_label: str | None) -> list[tuple[str, str | None]]:
    """The ways a row's label can relate to the site's, each with a label that stands for it."""
    kinds: list[tuple[str, str | None]] = [("site", site_label)]
    if site_label is not None:
        kinds.append(("none", None))
    kinds.append(("other", OTHER_LABEL))
    return kinds


def label_condition(column: Any, kind: str, site_label: Any) -> ColumnElement[bool]:
    if kind == "site":
        return column.is_(None) if site_label is None else column == site_label
    if kind == "none":
        return column.is_(None)
    if site_label is None:
        return column.is_not(None)
    return and_(column.is_not(None), column != site_label)


def shapes_where(
    shapes: Sequence[Shape], state: Any, role: Any, label: Any, site_label: Any
) -> ColumnElement[bool]:
    """SQL that holds exactly for rows of one of the allowed shapes."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s, r, kind in shapes:
        grouped[(s, kind)].append(r)
    if not grouped:
        return false()
    return or_(
        *(
            and_(state == s, label_condition(label, kind, site_label), role.in_(sorted(roles)))
            for (s, kind), roles in sorted(grouped.items())
        )
    )


class Lister:
    """Complete, keyset-paged lists whose rows are exactly what the policy allows."""

    def __init__(self, db: Database, policy: Policy, settings: Settings) -> None:
        self.db = db
        self.policy = policy
        self.source = settings.aspire_source
        self._contract_shapes = lru_cache(maxsize=4096)(self._derive_contract_shapes)
        self._account_shapes = lru_cache(maxsize=1024)(self._derive_account_shapes)
        # Statements are built once per query shape, per Lister (so per policy), never shared.
        self._contract_statement = lru_cache(maxsize=2048)(self._build_contract_statement)

    def contracts(
        self,
        user_id: str,
        action: str = "view",
        state: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        min_data_version: int | None = None,
    ) -> Page[ListedContract]:
        """The contracts `user_id` may do `action` on, by contract id; a user not found has none.

        :raises InvalidInput: for an unknown action or state, a bad limit or cursor.
        :raises NotYetCurrent: when the store is older than `min_data_version`.
        """
        limit = clamp(limit)
        self._check_action(action)
        if state is not None and state not in (ContractState.ACTIVE, ContractState.CLOSED):
            raise InvalidInput("unknown state", [FieldError("state", "must be active or closed")])
        scope = f"contracts|{user_id}|{action}|{state}"
        after = decode_cursor(cursor, scope)
        with self.db.snapshot() as conn:
            found = self._user_accounts_roles(conn, user_id, min_data_version)
            if found is None:
                return Page([], None)
            user, accounts, roles = found
            shapes = self._contract_shapes(_freeze(user_facts(user, None)), action, roles)
            rows = self._contract_rows(conn, accounts, user.site_label, shapes, state, after, limit)
        items = [ListedContract(*row) for row in rows[:limit]]
        return Page(
            items, encode_cursor(scope, items[-1].contract_id) if len(rows) > limit else None
        )

    def _user_accounts_roles(
        self, conn: Connection, user_id: str, min_data_version: int | None
    ) -> tuple[UserRecord, list[str], tuple[str, ...]] | None:
        """The user with their site, their linked accounts and every role type known, in one
        round trip (a list's latency is mostly round trips).

        :raises NotYetCurrent: when the store is older than `min_data_version`.
        """
        rows = conn.execute(USER_CONTEXT, {"user_id": user_id}).all()
        require_version(rows[0][0], min_data_version)
        if rows[0][1] is None:
            return None
        user = UserRecord(*rows[0][1:7])
        accounts = sorted(r[7] for r in rows if r[7] is not None)
        roles = tuple(sorted(set((rows[0][8] or "").split(SEP)) - {""}))
        return user, accounts, roles

    def eligible_accounts(
        self,
        site_id: str,
        q: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        min_data_version: int | None = None,
    ) -> Page[ListedAccount]:
        """The accounts a link to a user of `site_id` would accept, by account id.

        :raises NotFound: `SITE_NOT_FOUND`.
        :raises InvalidInput: for a bad limit or cursor.
        :raises NotYetCurrent: when the store is older than `min_data_version`.
        """
        limit = clamp(limit)
        term = query_term(q) if q else ""
        scope = f"accounts|{site_id}|{term}"
        after = decode_cursor(cursor, scope)
        with self.db.read() as session:
            if min_data_version is not None:
                require_version(read_freshness(session).data_version, min_data_version)
            site = session.get(Site, site_id)
            if site is None:
                raise NotFound(f"no site '{site_id}'", "SITE_NOT_FOUND")
            roles = tuple(session.scalars(select(RoleType.role_type).order_by(RoleType.role_type)))
            shapes = self._account_shapes(site.private_label, roles)
            rows = self._account_rows(session, site.private_label, shapes, term, after, limit)
        items = [ListedAccount(a, n) for a, n in rows[:limit]]
        return Page(
            items, encode_cursor(scope, items[-1].account_id) if len(rows) > limit else None
        )

    def _derive_contract_shapes(
        self, facts: tuple[tuple[str, Any], ...], action: str, roles: tuple[str, ...]
    ) -> tuple[Shape, ...]:
        user = dict(facts)
        shapes = []
        for state in ContractState:
            for role in roles:
                for kind, label in label_kinds(user["site_label"]):
                    contract = {
                        "found": True,
                        "from_connected_source": True,
                        "state": state.value,
                        "private_label": label,
                        "roles": [role],
                    }
                    if self.policy.is_allowed(user, action, contract):
                        shapes.append((state.value, role, kind))
        return tuple(shapes)

    def _derive_account_shapes(
        self, site_label: str | None, roles: tuple[str, ...]
    ) -> tuple[Shape, ...]:
        shapes = []
        for state in ContractState:
            for role in roles:
                for kind, label in label_kinds(site_label):
                    account = {
                        "found": True,
                        "holdings": [{"role": role, "state": state.value, "label": label}],
                    }
                    if self.policy.link_eligible(account, {"private_label": site_label}):
                        shapes.append((state.value, role, kind))
        return tuple(shapes)

    def _contract_rows(
        self,
        conn: Connection,
        accounts: list[str],
        site_label: str | None,
        shapes: tuple[Shape, ...],
        state: str | None,
        after: str | None,
        limit: int,
    ) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
        """The first `limit + 1` allowed contracts after `after`, by contract id, each with
        every role type the accounts hold on it."""
        if not accounts:
            return []
        stmt = self._contract_statement(
            shapes, site_label is None, len(accounts), state, after is not None, limit
        )
        params: dict[str, Any] = {f"a{i}": a for i, a in enumerate(accounts)}
        params.update(site_label=site_label, after=after, source=self.source)
        return [
            (c, s, lbl, tuple(sorted(set((roles or "").split(SEP)) - {""})))
            for c, s, lbl, roles in conn.execute(stmt, params)
        ]

    @staticmethod
    def _build_contract_statement(
        shapes: tuple[Shape, ...],
        site_unlabelled: bool,
        accounts: int,
        state: str | None,
        paged: bool,
        limit: int,
    ) -> Select[Any]:
        """One statement per query shape, built once: values travel as bound parameters.

        Each linked account's parties are walked in index order and stop after enough rows
        for `limit + 1` contracts, so a page of a fleet lessee never sorts the whole fleet;
        the database merges the few runs, keeps the page, then reads the page's roles by
        primary key.
        """
        c, p = Contract, ContractParty
        site_label: Any = None if site_unlabelled else bindparam("site_label")
        # An account holds each role type at most once per contract, so this many rows hold
        # at least `limit + 1` distinct contracts whenever there are that many.
        per_run = (limit + 1) * max(1, len({role for _, role, _ in shapes}))
        runs = []
        for i in range(accounts):
            run = (
                select(c.contract_id, c.state, c.private_label)
                .join(p, p.contract_id == c.contract_id)
                .where(
                    p.account_id == bindparam(f"a{i}"),
                    c.source == bindparam("source"),
                    shapes_where(shapes, c.state, p.role_type, c.private_label, site_label),
                )
                .order_by(p.contract_id)
                .limit(per_run)
            )
            if state is not None:
                run = run.where(c.state == state)
            if paged:
                run = run.where(p.contract_id > bindparam("after"))
            runs.append(select(run.subquery()))
        merged = (runs[0] if accounts == 1 else union(*runs)).subquery()
        page = (
            select(merged.c.contract_id, merged.c.state, merged.c.private_label)
            .distinct()
            .order_by(merged.c.contract_id)
            .limit(limit + 1)
            .subquery()
        )
        held = (
            select(func.aggregate_strings(p.role_type, SEP))
            .where(
                p.contract_id == page.c.contract_id,
                p.account_id.in_([bindparam(f"a{i}") for i in range(accounts)]),
            )
            .scalar_subquery()
        )
        return select(page.c.contract_id, page.c.state, page.c.private_label, held).order_by(
            page.c.contract_id
        )

    def _account_rows(
        self,
        session: Session,
        site_label: str | None,
        shapes: tuple[Shape, ...],
        term: str,
        after: str | None,
        limit: int,
    ) -> list[tuple[str, str]]:
        a, p, c = Account, ContractParty, Contract
        holds = (
            select(p.account_id)
            .join(c, c.contract_id == p.contract_id)
            .where(
                p.account_id == a.account_id,
                c.source == self.source,
                shapes_where(shapes, c.state, p.role_type, c.private_label, site_label),
            )
            .exists()
        )
        stmt = (
            select(a.account_id, a.name)
            .where(a.source == self.source, holds)
            .order_by(a.account_id)
            .limit(limit + 1)
        )
        if term:
            matching = select(AccountTerm.account_id).where(
                AccountTerm.term >= term, AccountTerm.term < term + TOP
            )
            stmt = stmt.where(a.account_id.in_(matching))
        if after is not None:
            stmt = stmt.where(a.account_id > after)
        return [(r[0], r[1]) for r in session.execute(stmt)]

    def _check_action(self, action: str) -> None:
        error = self.policy.unknown_action(action)
        if error is not None:
            raise InvalidInput(
                f"unknown action; valid actions are: {self.policy.valid_actions}", [error]
            )


def _freeze(facts: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(facts.items()))
