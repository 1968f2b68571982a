"""What storing the decision log costs per decision, in the layout shipped and in a candidate
(`python -m bench.log_layouts`). Not the service's code: the measurement behind a proposal.

- shipped: a row per decision in `decisions`, indexed five ways (seq, decision_id, at, and the
  user and contract bucket indexes), each row hashed on the one before (`log_rows.Chained`);
- candidate: a row per batch of decisions (their shared time, caller, kind and versions
  once, the entries as one JSON array, one hash over the lot), plus one narrow row per
  decision keyed by contract and one per distinct user of the batch, for the audit API's
  reads by contract and by user.

Both are written through the store's own bulk insert (`authz.bulk.insert_rows`: COPY on
PostgreSQL, multi-row INSERT on SQLite), 20,000 decisions per transaction (batches of 100),
into tables that already hold `--entries` decisions, the layouts taking turns. Per decision it
prints the CPU of the writing thread (building rows and hashes, sending them, committing) and,
on PostgreSQL, of the database server's processes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from authz.bulk import insert_rows
from authz.config import ROOT
from authz.db import Database, make_engine
from authz.decisions import decision_ids
from authz.log_entry import LogEntry
from authz.log_rows import RECORD_COLUMNS, Chained
from authz.models import ID, DecisionRecord, UtcDateTime
from authz.schema import GENESIS
from bench.common import PG_URL
from bench.load import cpu_seconds, database_server_pids

PER_BATCH = 100
PER_WRITE = 20_000
POLICY_VERSION = "a" * 64

candidate = MetaData()
GROUPS = Table(
    "decision_groups",
    candidate,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("first_decision_id", String(36), nullable=False, unique=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("caller", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("data_version", BigInteger, nullable=False),
    Column("entries", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_decision_groups_at", "at"),
)
GROUP_COLUMNS = tuple(c.name for c in GROUPS.columns)
# Keyed by bucket first, as the shipped indexes are, so a write touches only the newest part.
BY_CONTRACT = Table(
    "decision_group_contracts",
    candidate,
    Column("bucket", BigInteger, primary_key=True),
    Column("contract_id", ID, primary_key=True),
    Column("group_seq", BigInteger, primary_key=True),
    Column("item", Integer, primary_key=True),
    sqlite_with_rowid=False,
)
BY_USER = Table(
    "decision_group_users",
    candidate,
    Column("bucket", BigInteger, primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("group_seq", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)
CONTRACT_COLUMNS = tuple(c.name for c in BY_CONTRACT.columns)
USER_COLUMNS = tuple(c.name for c in BY_USER.columns)
GROUP_BUCKET_BITS = 8  # 256 groups of 100: about the 16,384 entries of a shipped bucket


def batches(n: int, users: int = 200_000, contracts: int = 1_000_000) -> Iterator[list[LogEntry]]:
    """`n` decisions as batches of PER_BATCH entries, each batch one user's, as the portal
    sends them (one user, the contracts on a page)."""
    for _ in range(n // PER_BATCH):
        at = datetime.now(UTC)
        user = f"user-{random.randrange(users):06d}"
        yield [
            LogEntry(
                decision_id,
                at,
                "bench",
                "batch",
                {
                    "user_id": user,
                    "action": "view",
                    "contract_id": f"LS-{random.randrange(contracts):07d}-001",
                    "site_id": None,
                },
                random.random() < 0.3,
                POLICY_VERSION,
                7,
                (),
            )
            for decision_id in decision_ids(PER_BATCH)
        ]


class Layout:
    """A way of storing the log: its tables, and writes chained after the last one."""

    name = ""

    def __init__(self) -> None:
        self.seq, self.prev = 0, GENESIS

    def create(self, db: Database) -> None:
        raise NotImplementedError

    def write(self, db: Database, written: list[list[LogEntry]]) -> None:
        raise NotImplementedError


class Shipped(Layout):
    """A row per decision, chained as `SqlDecisionLog` chains them."""

    name = "shipped: a row per decision, five indexes"

    def create(self, db: Database) -> None:
        with db.write() as session:
            DecisionRecord.__table__.create(session.connection())

    def write(self, db: Database, written: list[list[LogEntry]]) -> None:
        chained = Chained(self.seq, self.prev, (e for b in written for e in b), lambda e: ())
        with db.write() as session:
            insert_rows(session, DecisionRecord.__table__, RECORD_COLUMNS, chained)
        self.seq, self.prev = chained.seq, chained.prev


class Grouped(Layout):
    """A row per batch, hashed whole on the one before, and the narrow rows that index it."""

    name = "candidate: a row per batch of 100, a narrow row per decision"

    def create(self, db: Database) -> None:
        with db.write() as session:
            candidate.create_all(session.connection())

    def write(self, db: Database, written: list[list[LogEntry]]) -> None:
        groups, contracts, users = [], [], []
        for batch in written:
            self.seq += 1
            first = batch[0]
            entries = [
                {
                    "decision_id": e.decision_id,
                    "input": e.request,
                    "allowed": e.allowed,
                    "reasons": e.reasons,
                }
                for e in batch
            ]
            content = {
                "seq": self.seq,
                "at": first.at,
                "caller": first.caller,
                "kind": first.kind,
                "policy_version": first.policy_version,
                "data_version": first.data_version,
                "prev_hash": self.prev,
            }
            # The entries are serialized once, for the row and the hash alike.
            stored = orjson.dumps(entries, option=orjson.OPT_SORT_KEYS)
            digest = hashlib.sha256(
                b"\n".join(
                    (self.prev.encode(), orjson.dumps(content, option=orjson.OPT_SORT_KEYS), stored)
                )
            ).hexdigest()
            groups.append(
                (
                    self.seq,
                    first.decision_id,
                    first.at,
                    first.caller,
                    first.kind,
                    first.policy_version,
                    first.data_version,
                    stored.decode(),
                    self.prev,
                    digest,
                )
            )
            bucket = self.seq >> GROUP_BUCKET_BITS
            contracts.extend(
                (bucket, e.request["contract_id"], self.seq, i) for i, e in enumerate(batch)
            )
            users.extend((bucket, u, self.seq) for u in {e.request["user_id"] for e in batch})
            self.prev = digest
        with db.write() as session:
            insert_rows(session, GROUPS, GROUP_COLUMNS, groups)
            insert_rows(session, BY_CONTRACT, CONTRACT_COLUMNS, contracts)
            insert_rows(session, BY_USER, USER_COLUMNS, users)


@contextmanager
def scratch(engine: str) -> Iterator[Database]:
    """An empty store of its own, removed afterwards."""
    if engine == "sqlite":
        path = ROOT / "var" / "bench" / "log-layouts.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
        files = [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", ".write-turn"))]
        for f in files:
            f.unlink(missing_ok=True)
    else:
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS authz_log_layouts CASCADE"))
            conn.execute(text("CREATE SCHEMA authz_log_layouts"))
        url = f"{PG_URL}?options=-csearch_path%3Dauthz_log_layouts"
    db = Database(make_engine(url))
    try:
        yield db
    finally:
        db.engine.dispose()
        if engine == "sqlite":
            for f in files:
                f.unlink(missing_ok=True)
        else:
            with admin.begin() as conn:
                conn.execute(text("DROP SCHEMA authz_log_layouts CASCADE"))
            admin.dispose()


def measure(engine: str, held: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per layout, the writer's and the database server's CPU per decision in each round."""
    layouts: list[Layout] = [Shipped(), Grouped()]
    found: dict[str, dict[str, list[float]]] = {}
    with scratch(engine) as db:
        for layout in layouts:
            layout.create(db)
            for _ in range(held // PER_WRITE):
                layout.write(db, list(batches(PER_WRITE)))
            found[layout.name] = {"writer": [], "server": []}
        server = [] if engine == "sqlite" else database_server_pids()
        for r in range(rounds):
            for layout in layouts if r % 2 == 0 else layouts[::-1]:
                written = list(batches(PER_WRITE))
                spent = _spent(layout, db, written, server)
                found[layout.name]["writer"].append(spent[0] / PER_WRITE * 1e6)
                found[layout.name]["server"].append(spent[1] / PER_WRITE * 1e6)
    return found


def _spent(
    layout: Layout, db: Database, written: list[list[LogEntry]], server: list[int]
) -> tuple[float, float]:
    """The CPU seconds the write took this thread and the database server's processes."""
    thread, before = time.thread_time(), cpu_seconds(server)
    layout.write(db, written)
    return time.thread_time() - thread, cpu_seconds(server) - before


def _figure(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--entries", type=int, default=1_000_000, help="held before measuring")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    random.seed(1)
    for engine in args.engines.split(","):
        found = measure(engine, args.entries, args.rounds)
        print(f"\n[{engine}] writing the decision log, {PER_WRITE} decisions per transaction")
        print(f"  CPU us per decision, median (least-greatest) of {args.rounds} rounds")
        for name, got in found.items():
            server = f"   database server {_figure(got['server'])}" if engine != "sqlite" else ""
            print(f"  {name:<60} writer {_figure(got['writer'])}{server}")


if __name__ == "__main__":
    main()
