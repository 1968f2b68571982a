"""Decision latency on the demo world, in-process and over HTTP, beside floors from the same run.

    python -m bench.decisions [--contracts N] [--accounts M] [--calls K]

Prints p50/p99 in milliseconds and ratios to the floors (a bare oso call on a trivial rule,
and /healthz served by the same gunicorn config), since these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests
from oso import Oso
from sqlalchemy import select

from authz.config import ROOT, Settings
from authz.decisions import CheckRequest
from authz.demo import DemoSize, build
from authz.models import ContractParty, UserAccount
from authz.runtime import Runtime


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    for _ in range(min(50, calls)):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]


def row(name: str, xs: list[float], floor: float | None = None) -> None:
    p50 = statistics.median(xs)
    ratio = f"{p50 / floor:8.1f}x" if floor else " " * 9
    print(f"{name:<44} {p50:9.3f} {pct(xs, 0.99):9.3f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contracts", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.sqlite3"
        settings = Settings(database_url=url)
        rt = Runtime.open(settings, migrate=True)
        t = time.perf_counter()
        build(rt, DemoSize(accounts=args.accounts, contracts=args.contracts), lambda _: None)
        print(
            f"demo world: {args.contracts} contracts, {args.accounts} accounts, "
            f"built in {time.perf_counter() - t:.1f} s on {rt.db.engine.dialect.name}"
        )
        allowed, denied = _cases(rt)
        trivial = Oso()
        trivial.load_str('allow(_actor, "view", _resource);')
        floor = timed(lambda: trivial.is_allowed({}, "view", {}), args.calls)
        print(f"\n{'in-process (ms)':<44} {'p50':>9} {'p99':>9} {'vs oso floor':>9}")
        row("oso.is_allowed on a trivial rule (floor)", floor)
        fp50 = statistics.median(floor)
        row(
            "check, allowed",
            timed(lambda: rt.decider.check(random.choice(allowed)), args.calls),
            fp50,
        )
        row(
            "check, denied",
            timed(lambda: rt.decider.check(random.choice(denied)), args.calls),
            fp50,
        )
        batch = [random.choice(allowed + denied) for _ in range(100)]
        b = timed(lambda: rt.decider.check_batch(batch), max(50, args.calls // 20))
        row("batch of 100", b, fp50)
        row(
            "explain, denied",
            timed(lambda: rt.decider.explain(random.choice(denied)), args.calls // 2),
            fp50,
        )
        key = rt.keys.create("bench", frozenset({"decide"}), datetime.now(UTC))
        rt.close()
        _http(url, key, allowed, args.calls)


def _cases(rt: Runtime) -> tuple[list[CheckRequest], list[CheckRequest]]:
    with rt.db.read() as s:
        pairs = s.execute(
            select(UserAccount.user_id, ContractParty.contract_id)
            .join(ContractParty, ContractParty.account_id == UserAccount.account_id)
            .limit(2000)
        ).all()
    checks = [CheckRequest(u, a, c) for u, c in pairs for a in ("view", "make_payment")]
    decisions = rt.decider.check_batch(checks[:1000])
    allowed = [d.request for d in decisions if d.allowed]
    denied = [d.request for d in decisions if not d.allowed]
    print(f"cases: {len(allowed)} allowed and {len(denied)} denied checks")
    return allowed, denied


def _http(url: str, key: str, allowed: list[CheckRequest], calls: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url}
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
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/readyz", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        s = requests.Session()
        h = {"Authorization": f"Bearer {key}"}
        floor = timed(lambda: s.get(f"{base}/healthz"), calls)
        print(f"\n{'over HTTP, one connection (ms)':<44} {'p50':>9} {'p99':>9} {'vs /healthz':>9}")
        row("/healthz (floor)", floor)
        fp50 = statistics.median(floor)

        def check() -> None:
            r = random.choice(allowed)
            s.post(
                f"{base}/v1/check",
                headers=h,
                json={"user_id": r.user_id, "action": r.action, "contract_id": r.contract_id},
            )

        row("POST /v1/check", timed(check, calls), fp50)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
