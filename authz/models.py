"""The schema: the ASPIRE replica, the portal's sites, users and links, sync batches, API keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    literal_column,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Ids order bytewise on every engine (keyset paging relies on it); see migration 0003.
ID = String(128).with_variant(postgresql.VARCHAR(128, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every engine (SQLite keeps them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, the text SQLAlchemy's DATETIME stores ('2026-11-26 10:00:00.000000'),
        written by orjson: the decision log's writer converts a time per entry, and
        SQLAlchemy's formatting cost 4.1 us where this costs 1.5."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            text = orjson.dumps(value.astimezone(UTC))[1:-7].decode()  # drop '+00:00"'
            if len(text) == 19:  # orjson, like isoformat, leaves out a zero fraction
                text += ".000000"
            return f"{text[:10]} {text[11:]}"

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ServiceState(Base):
    """One row: the data version every decision carries, and the newest applied sync."""

    __tablename__ = "service_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    last_batch_id: Mapped[str | None] = mapped_column(String(256))
    last_synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    newest_extracted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class WorkerLease(Base):
    """PostgreSQL: a process that answers decisions from the data version it was told of
    (`authz.watch`), the newest version it has seen, and until when that holds. A change
    answers only once every lease has seen it or run out."""

    __tablename__ = "worker_leases"
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class Site(Base):
    """A branded portal (partition), mapped to one private label or to none."""

    __tablename__ = "sites"
    site_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    private_label: Mapped[str | None] = mapped_column(ID)
    payments_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class Account(Base):
    """An ASPIRE account (a party: company or person), as last synced."""

    __tablename__ = "accounts"
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    source: Mapped[str] = mapped_column(ID, nullable=False)
    name: Mapped[str] = mapped_column(String(512), nullable=False)
    email: Mapped[str | None] = mapped_column(String(512))
    extracted_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class Contract(Base):
    """An ASPIRE contract (lease or loan), as last synced."""

    __tablename__ = "contracts"
    contract_id: Mapped[str] = mapped_column(ID, primary_key=True)
    source: Mapped[str] = mapped_column(ID, nullable=False)
    private_label: Mapped[str | None] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    booked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    extracted_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    batch_id: Mapped[str] = mapped_column(String(256), nullable=False)
    __table_args__ = (CheckConstraint("state IN ('pending', 'active', 'closed')", name="state"),)


class ContractParty(Base):
    """An account holding a role type on a contract.

    No foreign keys, here or on `AccountTerm`: the sync, their only writer, refuses a party
    whose account is neither in its batch nor held, writes a contract before its parties in
    one transaction, and deletes no account or contract. Checking each row again cost most
    of a sync on PostgreSQL (migration 0008).
    """

    __tablename__ = "contract_parties"
    contract_id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    role_type: Mapped[str] = mapped_column(ID, primary_key=True)
    # Link eligibility and listing walk from an account to its contracts; the role type is
    # in the index so that those walks never read the table.
    __table_args__ = (
        Index("ix_contract_parties_account_contract", "account_id", "contract_id", "role_type"),
    )


class RoleType(Base):
    """Every role type the replica has seen, as ASPIRE spells it (the domain lists ask the
    policy about)."""

    __tablename__ = "role_types"
    role_type: Mapped[str] = mapped_column(ID, primary_key=True)


class AccountTerm(Base):
    """Search terms of an account: its lowercased number and each lowercased word of its name.

    A prefix search is a range scan of the primary key.
    """

    __tablename__ = "account_terms"
    # Bytewise order on every engine, so that a prefix is one range of the index.
    term: Mapped[str] = mapped_column(
        String(512).with_variant(postgresql.VARCHAR(512, collation="C"), "postgresql"),
        primary_key=True,
    )
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    __table_args__ = (Index("ix_account_terms_account", "account_id"),)


class User(Base):
    """A portal end user, on exactly one site."""

    __tablename__ = "users"
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    site_id: Mapped[str] = mapped_column(ID, ForeignKey("sites.site_id"), nullable=False)
    email: Mapped[str] = mapped_column(String(512), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        Index("ix_users_site", "site_id"),
    )


class UserAccount(Base):
    """An ASPIRE account linked to a user (by an administrator or by self-enrollment)."""

    __tablename__ = "user_accounts"
    user_id: Mapped[str] = mapped_column(
        ID, ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(ID, ForeignKey("accounts.account_id"), primary_key=True)
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    __table_args__ = (Index("ix_user_accounts_account", "account_id"),)


class SyncBatch(Base):
    """An applied ASPIRE batch; its id makes a resend a no-op."""

    __tablename__ = "sync_batches"
    batch_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    source: Mapped[str] = mapped_column(ID, nullable=False)
    extracted_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    accounts: Mapped[int] = mapped_column(Integer, nullable=False)
    contracts: Mapped[int] = mapped_column(Integer, nullable=False)
    stale: Mapped[int] = mapped_column(Integer, nullable=False)
    data_version: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ApiKey(Base):
    """A caller's key: only a hash of the secret is kept."""

    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DecisionRecord(Base):
    """One decision, hash-chained to the one before it (`seq` order)."""

    __tablename__ = "decisions"
    # On SQLite a primary key declared exactly INTEGER is the table's rowid: one B-tree less
    # to write per entry than BIGINT, which gets an index of its own (same 64-bit range).
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    decision_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    caller: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    user_id: Mapped[str] = mapped_column(ID, nullable=False)
    contract_id: Mapped[str] = mapped_column(ID, nullable=False)
    input: Mapped[str] = mapped_column(Text, nullable=False)
    allowed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reasons: Mapped[str] = mapped_column(Text, nullable=False)
    policy_version: Mapped[str] = mapped_column(String(64), nullable=False)
    data_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # The audit API reads newest first, by user, by contract, or since a time. The user and
    # contract indexes begin with the entry's bucket (`DECISION_BUCKET`, see there).
    __table_args__ = (Index("ix_decisions_at", "at"),)


# Entries per bucket of the decision log's user and contract indexes: 2^14.
DECISION_BUCKET_BITS = 14
# An entry's bucket: consecutive entries share one, so the index entries a write adds are
# all in its newest bucket's part of each index, which stays small, and not spread over
# the whole of it. An index keyed by user or contract alone takes each entry at a random
# place: on SQLite, writes of 5,000 entries into a 1,000,000-entry log dirtied a page of it
# per entry, and cost 55-58 us per entry against 21-22 with buckets (20-21 at 2^14, 41-45
# at 2^18). A write rewrites the pages of the newest bucket it touches, so buckets smaller
# than a write pay off once writes are big (SQLite writes 20,000 entries per transaction):
# inserting 20,000-entry writes into a copy of a 2,000,000-entry log cost 9.3-11.3 us per
# entry at 2^16, 7.9-8.2 at 2^14, 7.2-7.5 at 2^12 and 5.5 with neither index (three runs);
# served, batches of 100 reached 59,900-62,400 decisions/s at 2^14 against 49,700-58,700
# at 2^16 (wrk, 8 connections, alternating). 2^14 and not smaller: a read by user or
# contract looks in each bucket, newest first (`authz.audit_trail.read`), and smaller
# buckets are more searches. Written with the number as a literal: SQLite uses an index on
# an expression only for that very expression, and a bound parameter is not the same.
DECISION_BUCKET = cast(
    "ColumnElement[int]", DecisionRecord.seq.op(">>")(literal_column(str(DECISION_BUCKET_BITS)))
)
Index("ix_decisions_user", DECISION_BUCKET, DecisionRecord.user_id, DecisionRecord.seq)
Index("ix_decisions_contract", DECISION_BUCKET, DecisionRecord.contract_id, DecisionRecord.seq)


class DecisionChain(Base):
    """The head of the decision chain, and the anchor left by pruning."""

    __tablename__ = "decision_chain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    anchor_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    anchor_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)
