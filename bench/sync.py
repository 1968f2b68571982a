"""Sync rate: contract records applied per second for one 100,000-contract ASPIRE batch.

Each engine gets an empty store of its own (a fresh SQLite file, a fresh PostgreSQL schema),
so the figure is the same batch into the same state every run: a first load, then the same
contracts again from a later extract (every party list replaced), which is a day's update.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from authz.config import Settings
from authz.db import make_engine
from authz.demo import DemoSize, records
from authz.replica import BatchIn
from authz.runtime import Runtime


@dataclass(frozen=True)
class SyncFigures:
    contracts: int
    validate_s: float
    first_apply_s: float
    update_apply_s: float

    def per_second(self, seconds: float) -> float:
        return self.contracts / seconds


def measure(url: str, contracts: int = 100_000, accounts: int = 20_000) -> SyncFigures:
    """Validate and apply one batch of `contracts` into the empty store at `url`, twice."""
    now = datetime.now(UTC)
    accts, recs, _ = records(DemoSize(accounts=accounts, contracts=contracts), now)
    body = {
        "source": "aspire-prod",
        "batch_id": "bench-sync#1",
        "extracted_at": (now - timedelta(minutes=5)).isoformat(),
        "accounts": accts,
        "contracts": recs,
    }
    with Runtime.open(Settings(database_url=url), migrate=True) as rt:
        t = time.perf_counter()
        batch = BatchIn.model_validate(body)
        validated = time.perf_counter() - t
        t = time.perf_counter()
        rt.replica.apply(batch, now)
        first = time.perf_counter() - t
        later = BatchIn.model_validate(
            {**body, "batch_id": "bench-sync#2", "extracted_at": now.isoformat()}
        )
        t = time.perf_counter()
        result = rt.replica.apply(later, now)
        update = time.perf_counter() - t
        if result.contracts != contracts:
            raise SystemExit(f"the update applied {result.contracts} of {contracts} contracts")
    return SyncFigures(contracts, validated, first, update)


def sqlite_store() -> tuple[str, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="authz-bench-sync-")
    return f"sqlite:///{Path(tmp.name) / 'sync.sqlite3'}", tmp


def postgresql_store(base_url: str) -> str:
    schema = "authz_bench_sync"
    admin = make_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{base_url}?options=-csearch_path%3D{schema}"
