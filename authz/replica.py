"""The ASPIRE replica: validating and applying sync batches, whole or not at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authz.bulk import insert_rows
from authz.db import Database
from authz.errors import FieldError, InvalidInput, Refused
from authz.models import (
    Account,
    AccountTerm,
    Contract,
    ContractParty,
    RoleType,
    ServiceState,
    SyncBatch,
)
from authz.search import account_terms
from authz.state import Freshness, bump_data_version, read_freshness
from authz.text import AspireEmail, AspireText, Id, Label

CHUNK = 500
ANALYZE_AFTER = 5_000
T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PartyIn(Strict):
    account_id: Id
    role_type: Id


class AccountIn(Strict):
    account_id: Id
    name: AspireText
    email: AspireEmail | None = None


class ContractIn(Strict):
    contract_id: Id
    private_label: Id | None
    state: Literal["pending", "active", "closed"]
    booked_at: Annotated[AwareDatetime, Field(strict=False)] | None = None
    parties: list[PartyIn] = Field(default_factory=list, max_length=10_000)


class BatchIn(Strict):
    """One extract of ASPIRE data, as the sync job sends it."""

    source: Id
    batch_id: Label
    extracted_at: Annotated[AwareDatetime, Field(strict=False)]
    accounts: list[AccountIn] = Field(default_factory=list)
    contracts: list[ContractIn] = Field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    applied: bool
    data_version: int
    accounts: int
    contracts: int
    stale: int


@dataclass(frozen=True)
class SyncStatus:
    source: str
    freshness: Freshness


class Replica:
    """Applies batches from the connected ASPIRE source and reports the replica's freshness."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source

    def apply(self, batch: BatchIn, now: datetime) -> BatchResult:
        """Apply a batch atomically; a `batch_id` already applied changes nothing.

        :raises Refused: `SOURCE_MISMATCH` for a batch from another ASPIRE instance.
        :raises InvalidInput: naming inconsistent records (duplicates, unknown parties).
        :raises Unavailable: when the store cannot answer.
        """
        if batch.source != self.source:
            raise Refused(
                "SOURCE_MISMATCH",
                f"this deployment is connected to ASPIRE source '{self.source}', "
                f"not '{batch.source}'",
            )
        _check_duplicates(batch)
        try:
            with self.db.write() as session:
                done = _already_applied(session, batch.batch_id)
                if done is not None:
                    return done
                return self._apply(session, batch, now)
        except IntegrityError:
            # A concurrent request applied the same batch_id first.
            with self.db.read() as session:
                done = _already_applied(session, batch.batch_id)
            if done is None:
                raise
            return done

    def status(self) -> SyncStatus:
        """The connected source and the newest applied sync."""
        with self.db.read() as session:
            return SyncStatus(self.source, read_freshness(session))

    def _apply(self, session: Session, batch: BatchIn, now: datetime) -> BatchResult:
        at = batch.extracted_at
        _check_parties_held(session, batch)
        fresh_accounts, _ = _not_stale(session, Account, Account.account_id, batch.accounts, at)
        fresh_contracts, held = _not_stale(
            session, Contract, Contract.contract_id, batch.contracts, at
        )
        stale = (
            len(batch.accounts) - len(fresh_accounts) + len(batch.contracts) - len(fresh_contracts)
        )
        _upsert(
            session,
            Account,
            "account_id",
            [
                {
                    "account_id": a.account_id,
                    "source": batch.source,
                    "name": a.name,
                    "email": a.email,
                    "extracted_at": at,
                }
                for a in fresh_accounts
            ],
        )
        _index_terms(session, fresh_accounts)
        _record_role_types(session, fresh_contracts)
        # Only contracts held before have parties to replace.
        replaced = [c.contract_id for c in fresh_contracts if c.contract_id in held]
        postgres = session.get_bind().dialect.name == "postgresql"
        if not postgres:
            for ids in _chunks(replaced):
                session.execute(delete(ContractParty).where(ContractParty.contract_id.in_(ids)))
        staged = _upsert(
            session,
            Contract,
            "contract_id",
            [
                {
                    "contract_id": c.contract_id,
                    "source": batch.source,
                    "private_label": c.private_label,
                    "state": c.state,
                    "booked_at": c.booked_at,
                    "extracted_at": at,
                    "batch_id": batch.batch_id,
                }
                for c in fresh_contracts
            ],
        )
        if postgres and replaced and staged:
            # One statement against the staged contracts, not a DELETE per 1,000 ids (a
            # contract new in this batch has no parties to delete).
            session.execute(
                text(
                    "DELETE FROM contract_parties AS p USING "
                    f"{staged} AS s WHERE p.contract_id = s.contract_id"
                )
            )
        parties = {
            (c.contract_id, p.account_id, p.role_type) for c in fresh_contracts for p in c.parties
        }
        insert_rows(
            session, ContractParty, ("contract_id", "account_id", "role_type"), sorted(parties)
        )
        if len(batch.contracts) + len(batch.accounts) >= ANALYZE_AFTER:
            _refresh_statistics(session)
        version = bump_data_version(session)
        newest = read_freshness(session).extracted_at
        session.execute(
            update(ServiceState)
            .where(ServiceState.id == 1)
            .values(
                last_batch_id=batch.batch_id,
                last_synced_at=now,
                newest_extracted_at=at if newest is None or at > newest else newest,
            )
        )
        result = BatchResult(
            batch.batch_id, True, version, len(fresh_accounts), len(fresh_contracts), stale
        )
        session.add(
            SyncBatch(
                batch_id=batch.batch_id,
                source=batch.source,
                extracted_at=at,
                applied_at=now,
                accounts=result.accounts,
                contracts=result.contracts,
                stale=stale,
                data_version=version,
            )
        )
        session.flush()
        return result


def _index_terms(session: Session, accounts: list[AccountIn]) -> None:
    """Replace the search terms of the accounts written."""
    for ids in _chunks([a.account_id for a in accounts]):
        session.execute(delete(AccountTerm).where(AccountTerm.account_id.in_(ids)))
    rows = [
        (t, a.account_id) for a in accounts for t in sorted(account_terms(a.account_id, a.name))
    ]
    insert_rows(session, AccountTerm, ("term", "account_id"), rows)


def _record_role_types(session: Session, contracts: list[ContractIn]) -> None:
    seen = sorted({p.role_type for c in contracts for p in c.parties})
    if seen:
        stmt = _dialect_insert(session, RoleType).on_conflict_do_nothing()
        session.execute(stmt, [{"role_type": r} for r in seen])


def _refresh_statistics(session: Session) -> None:
    """After a large batch, let PostgreSQL's planner see the tables' new sizes, so the next
    batch's lookups stay index scans (SQLite plans from its indexes without statistics)."""
    if session.get_bind().dialect.name == "postgresql":
        for table in ("accounts", "contracts", "contract_parties", "account_terms"):
            session.execute(text(f"ANALYZE {table}"))


def _already_applied(session: Session, batch_id: str) -> BatchResult | None:
    row = session.get(SyncBatch, batch_id)
    if row is None:
        return None
    current = read_freshness(session).data_version
    return BatchResult(batch_id, False, current, row.accounts, row.contracts, row.stale)


def _check_duplicates(batch: BatchIn) -> None:
    errors: list[FieldError] = []
    for kind, key, records in (
        ("accounts", "account_id", batch.accounts),
        ("contracts", "contract_id", batch.contracts),
    ):
        seen: dict[str, int] = {}
        for i, record in enumerate(records):
            value = getattr(record, key)
            if value in seen:
                errors.append(
                    FieldError(
                        f"{kind}[{i}].{key}", f"'{value}' also appears at {kind}[{seen[value]}]"
                    )
                )
            seen.setdefault(value, i)
    if errors:
        raise InvalidInput("the batch names a record twice", errors)


def _check_parties_held(session: Session, batch: BatchIn) -> None:
    """A party's account must be in the batch or already held from this source."""
    in_batch = {a.account_id for a in batch.accounts}
    wanted = {p.account_id for c in batch.contracts for p in c.parties} - in_batch
    held: set[str] = set()
    for ids in _chunks(sorted(wanted)):
        held.update(
            session.scalars(
                select(Account.account_id).where(
                    Account.account_id.in_(ids), Account.source == batch.source
                )
            )
        )
    missing = wanted - held
    if not missing:
        return
    errors = [
        FieldError(
            f"contracts[{i}].parties[{j}].account_id",
            f"account '{p.account_id}' is neither in this batch nor already held",
        )
        for i, c in enumerate(batch.contracts)
        for j, p in enumerate(c.parties)
        if p.account_id in missing
    ]
    raise InvalidInput("the batch names parties whose accounts are unknown", errors)


def _not_stale(
    session: Session, model: Any, key: Any, records: Sequence[T], at: datetime
) -> tuple[list[T], set[str]]:
    """The records whose stored row was not written by a batch extracted later, and the ids
    of all the records already held."""
    ids = [getattr(r, key.key) for r in records]
    held: dict[str, datetime] = {}
    for chunk in _chunks(ids):
        rows = session.execute(select(key, model.extracted_at).where(key.in_(chunk)))
        held.update((k, v) for k, v in rows)
    return [r for r in records if held.get(getattr(r, key.key), at) <= at], set(held)


def _upsert(session: Session, model: Any, key: str, rows: list[dict[str, Any]]) -> str | None:
    """Insert or update the rows by `key`; on PostgreSQL, returns the name of the temporary
    table they were staged in (dropped at commit)."""
    if not rows:
        return None
    if session.get_bind().dialect.name == "postgresql":
        return _copy_upsert(session, model, key, rows)
    for chunk in _chunks(rows):
        stmt = _dialect_insert(session, model)
        stmt = stmt.on_conflict_do_update(
            index_elements=[key],
            set_={c: getattr(stmt.excluded, c) for c in rows[0] if c != key},
        )
        # Through Core: the ORM sent an upsert per row; Core sends a multi-row statement.
        session.connection().execute(stmt, chunk)
    return None


def _copy_upsert(session: Session, model: Any, key: str, rows: list[dict[str, Any]]) -> str:
    """PostgreSQL: the rows COPYed into a temporary table dropped at commit, then one
    INSERT ... SELECT ... ON CONFLICT DO UPDATE. psycopg had sent the multi-row upsert as a
    pipeline of one message per row."""
    table = model.__table__.name
    staged = f"authz_upsert_{table}"
    columns = tuple(rows[0])
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{staged}"))
    session.execute(
        text(f"CREATE TEMP TABLE {staged} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    )
    insert_rows(session, staged, columns, [tuple(r[c] for c in columns) for r in rows])
    session.execute(
        text(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staged} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
    )
    return staged


def _dialect_insert(session: Session, model: Any) -> Any:
    """An INSERT that knows ON CONFLICT, on either engine."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _chunks(items: Sequence[T] | Iterable[T]) -> Iterator[list[T]]:
    items = list(items)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
