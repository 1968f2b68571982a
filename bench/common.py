"""What the benchmark's parts share: timing, the report, the worlds and a served gunicorn."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import delete, func, select, text, update

from authz.config import ROOT, Settings
from authz.db import Database, make_engine
from authz.demo import DemoSize, build
from authz.models import Contract, DecisionChain, DecisionRecord
from authz.runtime import Runtime
from authz.schema import GENESIS

PG_URL = os.environ.get("AUTHZ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = ROOT / "bench" / "results"


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    for _ in range(min(20, calls)):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def timed_together(
    fns: dict[str, Callable[[], object]], calls: int, rounds: int = 10
) -> dict[str, list[float]]:
    """Each function timed `calls` times as `timed` does, in `rounds` turns taken in
    alternation, so that what slows the machine for a while (it is shared) slows them all
    alike and their ratios hold."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name].extend(timed(fn, max(1, calls // rounds)))
    return out


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def section(self, title: str, floor_name: str) -> None:
        print(f"\n{title:<58} {'p50':>8} {'p99':>8} {'vs ' + floor_name:>12}")

    def add(
        self, engine: str, where: str, name: str, xs: list[float], floor: float | None = None
    ) -> float:
        p50 = statistics.median(xs)
        p99 = sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.99))]
        ratio = p50 / floor if floor else None
        shown = f"{ratio:11.1f}x" if ratio else ""
        print(f"  {name:<56} {p50:8.3f} {p99:8.3f} {shown:>12}")
        self.rows.append(
            {
                "engine": engine,
                "where": where,
                "name": name,
                "calls": len(xs),
                "p50_ms": round(p50, 4),
                "p99_ms": round(p99, 4),
                "spread_ms": round(p99 - p50, 4),
                "ratio_to_floor": round(ratio, 2) if ratio else None,
            }
        )
        return p50

    def figure(
        self, engine: str, where: str, name: str, value: float, unit: str, **extra: Any
    ) -> None:
        """One figure that is not a latency (a rate, a size), printed and kept."""
        shown = "  ".join(f"{k} {v}" for k, v in extra.items())
        print(f"  {name:<56} {value:10.1f} {unit:<14} {shown}")
        self.rows.append(
            {
                "engine": engine,
                "where": where,
                "name": name,
                "value": round(value, 2),
                "unit": unit,
                **extra,
            }
        )


def world(engine: str, contracts: int, accounts: int) -> str:
    """The database URL of a demo world of this size, built when missing."""
    if engine == "sqlite":
        url = f"sqlite:///{ROOT}/var/bench/sqlite-{contracts}.sqlite3"
    else:
        schema = f"authz_bench_{contracts}"
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        admin.dispose()
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    with Runtime.open(Settings(database_url=url), migrate=True) as rt:
        with rt.db.read() as s:
            held = s.scalar(select(func.count()).select_from(Contract)) or 0
        if held != contracts:
            if held:
                raise SystemExit(f"{url} holds {held} contracts, not {contracts}: remove it first")
            t = time.perf_counter()
            print(f"building the demo world ({contracts} contracts) on {engine}...", flush=True)
            build(rt, DemoSize(accounts=accounts, contracts=contracts, users=200), print)
            print(f"built in {time.perf_counter() - t:.0f} s")
    return url


def empty_log(url: str) -> int:
    """Empty the decision log of a benchmark world, its chain started again; how many
    entries it held. Every run adds millions of entries, and a bigger log costs more to
    write to (PostgreSQL, batches of 100 under wrk: 51,100-55,000 decisions/s at 24-26 us
    of worker CPU each with 14 million entries, 59,200-63,000 at 20-21 us once emptied), so
    each run starts from an empty one and the figures of two runs compare."""
    db = Database.from_url(url)
    try:
        with db.read() as s:
            held = s.scalar(select(func.count()).select_from(DecisionRecord)) or 0
        with db.write() as s:
            if db.is_sqlite:
                s.execute(delete(DecisionRecord))
            else:
                s.execute(text(f"TRUNCATE {DecisionRecord.__tablename__}"))
            s.execute(
                update(DecisionChain)
                .where(DecisionChain.id == 1)
                .values(last_seq=0, last_hash=GENESIS, anchor_seq=0, anchor_hash=GENESIS)
            )
        if db.is_sqlite and held:
            # SQLite keeps the deleted pages and hands them out again, scattered through
            # the file: batches reached 50,600-59,600 decisions/s on such a file against
            # 63,300-68,200 on one whose log had only grown. VACUUM writes the file afresh.
            raw = db.engine.raw_connection()
            try:
                raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
            finally:
                raw.close()
    finally:
        db.dispose()
    return held


@dataclass(frozen=True)
class Served:
    base: str
    pid: int  # the gunicorn master


@contextmanager
def served(url: str) -> Iterator[Served]:
    """gunicorn with the shipped config on a free port, until the block ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "service/gunicorn_conf.py",
            "-b",
            f"127.0.0.1:{port}",
            "service.wsgi:app",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(f"{base}/readyz", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield Served(base, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
