"""`make bench`: decision and list latency at scale, in-process and over HTTP.

    python -m bench [--contracts 1000000] [--accounts 200000] [--engines sqlite,postgresql]

Builds (once, then reuses) the demo world in `var/bench/` and in a PostgreSQL schema, then
prints p50/p99 in milliseconds beside floors measured in the same run: a bare `oso.is_allowed`
on a trivial rule in-process, and `/healthz` served by the same gunicorn config over HTTP.
These machines are shared and noisy: read the ratios, not the absolute figures.
Writes every figure to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from oso import Oso
from sqlalchemy import func, select, text

from authz.config import ROOT, Settings
from authz.db import make_engine
from authz.decisions import CheckRequest
from authz.demo import DemoSize, build
from authz.models import Contract, ContractParty, UserAccount
from authz.runtime import Runtime

PG_URL = os.environ.get("AUTHZ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = ROOT / "bench" / "results"
QUERIES = ["gran", "acme", "tru", "summ", "1000", "10123", "delta", "pio"]


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    for _ in range(min(20, calls)):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
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


def cases(rt: Runtime) -> dict[str, Any]:
    """Typical users (1-10 visible contracts), the fleet lessee, and decision cases."""
    typical = []
    for i in range(1, 200):
        user = f"user-{i:04d}"
        n = len(rt.lister.contracts(user, "view", None, 11).items)
        if 1 <= n <= 10:
            typical.append(user)
    fleet = "user-0200"
    with rt.db.read() as s:
        pairs = s.execute(
            select(UserAccount.user_id, ContractParty.contract_id)
            .join(ContractParty, ContractParty.account_id == UserAccount.account_id)
            .where(UserAccount.user_id != fleet)
            .limit(2000)
        ).all()
    checks = [CheckRequest(u, a, c) for u, c in pairs for a in ("view", "make_payment")]
    decided = rt.decider.check_batch(checks[:1000])
    return {
        "typical": typical,
        "fleet": fleet,
        "allowed": [d.request for d in decided if d.allowed],
        "denied": [d.request for d in decided if not d.allowed],
    }


def in_process(rt: Runtime, c: dict[str, Any], report: Report, engine: str, calls: int) -> None:
    trivial = Oso()
    trivial.load_str('allow(_actor, "view", _resource);')
    report.section(f"[{engine}] in-process, ms", "oso floor")
    floor = report.add(
        engine,
        "in-process",
        "oso.is_allowed, trivial rule (floor)",
        timed(lambda: trivial.is_allowed({}, "view", {}), calls),
    )

    def add(name: str, fn: Callable[[], object], n: int = calls) -> None:
        report.add(engine, "in-process", name, timed(fn, n), floor)

    add("check, allowed", lambda: rt.decider.check(random.choice(c["allowed"])))
    add("check, denied", lambda: rt.decider.check(random.choice(c["denied"])))
    batch = [random.choice(c["allowed"] + c["denied"]) for _ in range(100)]
    add("check batch of 100", lambda: rt.decider.check_batch(batch), max(20, calls // 20))
    add("explain, denied", lambda: rt.decider.explain(random.choice(c["denied"])), calls // 2)
    add(
        f"list, typical user ({len(c['typical'])} users, 1-10 contracts)",
        lambda: rt.lister.contracts(random.choice(c["typical"])),
    )
    pages = _pager(lambda cur: rt.lister.contracts(c["fleet"], "view", None, 100, cur))
    add("list, fleet lessee, next page of 100", lambda: next(pages))
    add(
        "eligible accounts, search q (site summit)",
        lambda: rt.lister.eligible_accounts("summit", random.choice(QUERIES), 20),
    )
    add(
        "eligible accounts, first page (site summit)",
        lambda: rt.lister.eligible_accounts("summit", None, 100),
    )


def _pager(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    """Pages of a list, one per call, starting over at the end."""
    cursor = None
    while True:
        page = fetch(cursor)
        cursor = page.next_cursor
        yield page


@contextmanager
def served(url: str) -> Iterator[str]:
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
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def over_http(
    url: str, key: str, c: dict[str, Any], report: Report, engine: str, calls: int
) -> None:
    with served(url) as base:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {key}"
        report.section(f"[{engine}] over HTTP, one connection, ms", "/healthz")
        floor = report.add(
            engine, "http", "GET /healthz (floor)", timed(lambda: s.get(f"{base}/healthz"), calls)
        )

        def add(name: str, fn: Callable[[], object]) -> None:
            report.add(engine, "http", name, timed(fn, calls), floor)

        def check() -> None:
            r = random.choice(c["allowed"])
            s.post(
                f"{base}/v1/check",
                json={"user_id": r.user_id, "action": r.action, "contract_id": r.contract_id},
            )

        add("POST /v1/check", check)
        add(
            "list, typical user",
            lambda: s.get(f"{base}/v1/users/{random.choice(c['typical'])}/contracts"),
        )
        state: dict[str, Any] = {"cursor": None}

        def fleet_page() -> None:
            params = {"limit": "100", **({"cursor": state["cursor"]} if state["cursor"] else {})}
            got = s.get(f"{base}/v1/users/{c['fleet']}/contracts", params=params).json()
            state["cursor"] = got["next_cursor"]

        add("list, fleet lessee, next page of 100", fleet_page)
        add(
            "eligible accounts, search q",
            lambda: s.get(
                f"{base}/v1/sites/summit/eligible-accounts",
                params={"q": random.choice(QUERIES), "limit": "20"},
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contracts", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    random.seed(1)
    report = Report()
    for engine in args.engines.split(","):
        url = world(engine, args.contracts, args.accounts)
        with Runtime.open(Settings(database_url=url)) as rt:
            c = cases(rt)
            fleet_rows = len(list(_all(rt, c["fleet"])))
            print(
                f"\n{engine}: {args.contracts} contracts; {len(c['typical'])} typical users; "
                f"the fleet lessee may view {fleet_rows}"
            )
            in_process(rt, c, report, engine, args.calls)
            key = rt.keys.create(
                f"bench-{datetime.now(UTC):%Y%m%d%H%M%S%f}",
                frozenset({"decide"}),
                datetime.now(UTC),
            )
        over_http(url, key, c, report, engine, args.calls)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "at": datetime.now(UTC).isoformat(),
        "contracts": args.contracts,
        "accounts": args.accounts,
        "rows": report.rows,
    }
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=2))
    print(f"\nwritten to {RESULTS / 'latest.json'}")


def _all(rt: Runtime, user: str) -> Iterator[str]:
    cursor = None
    while True:
        page = rt.lister.contracts(user, "view", None, 1000, cursor)
        yield from (x.contract_id for x in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return


if __name__ == "__main__":
    main()
