"""The portal's sites, end users and their linked ASPIRE accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authz.db import Database
from authz.errors import NotFound, Refused
from authz.facts import account_facts, load_holdings
from authz.models import Account, Site, User, UserAccount
from authz.policy import Policy
from authz.state import bump_data_version, read_freshness

T = TypeVar("T")


@dataclass(frozen=True)
class SiteView:
    site_id: str
    name: str
    private_label: str | None
    payments_enabled: bool


@dataclass(frozen=True)
class LinkedAccount:
    account_id: str
    name: str
    linked_at: datetime


@dataclass(frozen=True)
class UserView:
    user_id: str
    site_id: str
    email: str
    status: str
    linked_accounts: list[LinkedAccount]


@dataclass(frozen=True)
class Written(Generic[T]):
    """What a write answered: the record, whether it was created, and the data version after."""

    value: T
    created: bool
    data_version: int


@dataclass(frozen=True)
class LinkRefusal:
    code: str
    message: str


class Directory:
    """Writes and reads sites, users and links; linking asks the policy's R7 rule."""

    def __init__(self, db: Database, policy: Policy, source: str) -> None:
        self.db = db
        self.policy = policy
        self.source = source

    def put_site(
        self,
        site_id: str,
        name: str,
        private_label: str | None,
        payments_enabled: bool,
        now: datetime,
    ) -> Written[SiteView]:
        """Create or replace a site."""
        with self.db.write() as session:
            site = session.get(Site, site_id)
            created = site is None
            if site is None:
                site = Site(site_id=site_id)
                session.add(site)
            site.name, site.private_label = name, private_label
            site.payments_enabled, site.updated_at = payments_enabled, now
            session.flush()
            return Written(_site_view(site), created, bump_data_version(session))

    def sites(self) -> list[SiteView]:
        with self.db.read() as session:
            return [_site_view(s) for s in session.scalars(select(Site).order_by(Site.site_id))]

    def get_site(self, site_id: str) -> SiteView:
        """:raises NotFound: `SITE_NOT_FOUND`."""
        with self.db.read() as session:
            site = session.get(Site, site_id)
            if site is None:
                raise NotFound(f"no site '{site_id}'", "SITE_NOT_FOUND")
            return _site_view(site)

    def put_user(
        self, user_id: str, site_id: str, email: str, status: str, now: datetime
    ) -> Written[UserView]:
        """Create or replace a user.

        :raises Refused: `SITE_NOT_FOUND` when the site does not exist.
        """
        with self.db.write() as session:
            if session.get(Site, site_id) is None:
                raise Refused("SITE_NOT_FOUND", f"no site '{site_id}'; create the site first")
            user = session.get(User, user_id)
            created = user is None
            if user is None:
                user = User(user_id=user_id)
                session.add(user)
            user.site_id, user.email, user.status, user.updated_at = site_id, email, status, now
            session.flush()
            version = bump_data_version(session)
            return Written(_user_view(session, user), created, version)

    def get_user(self, user_id: str) -> UserView:
        """:raises NotFound: `USER_NOT_FOUND`."""
        with self.db.read() as session:
            return _user_view(session, _user(session, user_id))

    def link(self, user_id: str, account_id: str, now: datetime) -> Written[LinkedAccount]:
        """Link an account to a user when the policy's R7 rule allows it; a repeat changes nothing.

        :raises NotFound: `USER_NOT_FOUND`.
        :raises Refused: `ACCOUNT_NOT_ELIGIBLE`, with `reasons`.
        """
        try:
            with self.db.write() as session:
                return self._link(session, user_id, account_id, now)
        except IntegrityError:
            # A concurrent request made the same link first.
            return self.link(user_id, account_id, now)

    def _link(
        self, session: Session, user_id: str, account_id: str, now: datetime
    ) -> Written[LinkedAccount]:
        user = _user(session, user_id)
        existing = session.get(UserAccount, (user_id, account_id))
        if existing is not None:
            name = session.get(Account, account_id)
            linked = LinkedAccount(account_id, name.name if name else "", existing.linked_at)
            return Written(linked, False, read_freshness(session).data_version)
        site = session.get(Site, user.site_id)
        assert site is not None  # users.site_id is a foreign key
        refusals = self._eligibility(session, account_id, site)
        if refusals:
            raise Refused(
                "ACCOUNT_NOT_ELIGIBLE",
                f"account '{account_id}' may not be linked to a user of site '{site.site_id}': "
                + "; ".join(r.message for r in refusals),
                reasons=[{"code": r.code, "message": r.message} for r in refusals],
            )
        session.add(UserAccount(user_id=user_id, account_id=account_id, linked_at=now))
        session.flush()
        account = session.get(Account, account_id)
        assert account is not None
        return Written(
            LinkedAccount(account_id, account.name, now), True, bump_data_version(session)
        )

    def eligibility(self, site_id: str, account_id: str) -> list[LinkRefusal]:
        """Why `account_id` may not be linked to a user of `site_id` (empty when it may)."""
        with self.db.read() as session:
            site = session.get(Site, site_id)
            if site is None:
                raise NotFound(f"no site '{site_id}'", "SITE_NOT_FOUND")
            return self._eligibility(session, account_id, site)

    def _eligibility(self, session: Session, account_id: str, site: Site) -> list[LinkRefusal]:
        holdings = load_holdings(session, account_id, self.source)
        account = account_facts(holdings)
        site_facts = {"private_label": site.private_label}
        if self.policy.link_eligible(account, site_facts):
            return []
        for cond in self.policy.link_conditions:
            if not self.policy.holds(cond.name, account, site_facts):
                return [
                    LinkRefusal(cond.code, _link_message(cond.code, account_id, site, holdings))
                ]
        # The policy refused but named no failed condition: still a refusal (fail closed).
        return [LinkRefusal("NOT_ELIGIBLE", f"the policy refuses account '{account_id}'")]

    def unlink(self, user_id: str, account_id: str) -> int:
        """Remove a link; returns the data version after.

        :raises NotFound: `USER_NOT_FOUND` or `LINK_NOT_FOUND`.
        """
        with self.db.write() as session:
            _user(session, user_id)
            result = session.execute(
                delete(UserAccount).where(
                    UserAccount.user_id == user_id, UserAccount.account_id == account_id
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound(
                    f"account '{account_id}' is not linked to user '{user_id}'", "LINK_NOT_FOUND"
                )
            return bump_data_version(session)


def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user '{user_id}'", "USER_NOT_FOUND")
    return user


def _site_view(site: Site) -> SiteView:
    return SiteView(site.site_id, site.name, site.private_label, site.payments_enabled)


def _user_view(session: Session, user: User) -> UserView:
    rows = session.execute(
        select(UserAccount.account_id, Account.name, UserAccount.linked_at)
        .join(Account, Account.account_id == UserAccount.account_id)
        .where(UserAccount.user_id == user.user_id)
        .order_by(UserAccount.account_id)
    )
    linked = [LinkedAccount(*r) for r in rows]
    return UserView(user.user_id, user.site_id, user.email, user.status, linked)


def _link_message(code: str, account_id: str, site: Site, holdings: list | None) -> str:
    label = (
        "no private label"
        if site.private_label is None
        else f"private label '{site.private_label}'"
    )
    if code == "ACCOUNT_NOT_FOUND":
        return f"the replica does not hold ASPIRE account '{account_id}'"
    held = (
        ", ".join(
            f"{h.role} on {h.contracts} {h.state} contract(s) under "
            + ("no private label" if h.label is None else f"'{h.label}'")
            for h in holdings or []
        )
        or "no role on any contract"
    )
    if code == "NO_ACTIVE_PARTY_ROLE":
        return (
            f"account '{account_id}' is not Customer or Guarantor on any active contract "
            f"(it holds: {held})"
        )
    return (
        f"account '{account_id}' is Customer or Guarantor on active contracts, but none under "
        f"{label}, the label of site '{site.site_id}' (it holds: {held})"
    )
