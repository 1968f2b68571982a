"""`make bench`: decisions, lists, load, sync and memory at scale, on SQLite and PostgreSQL.

    python -m bench [--contracts 1000000] [--accounts 200000] [--engines sqlite,postgresql]

Builds (once, then reuses) the demo world in `var/bench/` and in a PostgreSQL schema, empties
its decision log (each run starts from an empty one: a bigger log is slower to write), then
prints, each beside a floor measured in the same run:
- in-process p50/p99 in ms beside a bare `oso.is_allowed` on a trivial rule, and beside AWS
  Cedar (cedarpy) deciding the same rules on the same facts (bench/cedar.py);
- over HTTP, one connection, beside `/healthz` served by the same gunicorn config;
- under load from a second process (wrk; bench/under_load.py) at 1, 8 and 64 connections,
  requests/s and p50/p99 beside `/healthz` under the same load; a batch of 100 (at 8
  connections the median of `ROUNDS` alternated rounds, with their spread); the peak RSS of
  the workers;
- the sync rate of one 100,000-contract batch (bench/sync.py);
- then each target of issue 5, met or missed and by how much (bench/targets.py).
These machines are shared and noisy: read the ratios, not the absolute figures.
Writes every figure to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import requests
from oso import Oso
from sqlalchemy import select

from authz.config import Settings
from authz.decisions import CheckRequest
from authz.models import ContractParty, UserAccount
from authz.runtime import Runtime
from bench import sync, targets
from bench.cedar import cedar_section
from bench.common import PG_URL, RESULTS, Report, empty_log, served, timed, world
from bench.under_load import under_load

FLEET = "user-0200"  # the demo world's user with the most contracts
QUERIES = ["gran", "acme", "tru", "summ", "1000", "10123", "delta", "pio"]


def cases(rt: Runtime) -> dict[str, Any]:
    """Typical users (1-10 visible contracts), the fleet lessee, and decision cases."""
    typical = []
    for i in range(1, 200):
        user = f"user-{i:04d}"
        n = len(rt.lister.contracts(user, "view", None, 11).items)
        if 1 <= n <= 10:
            typical.append(user)
    with rt.db.read() as s:
        pairs = s.execute(
            select(UserAccount.user_id, ContractParty.contract_id)
            .join(ContractParty, ContractParty.account_id == UserAccount.account_id)
            .where(UserAccount.user_id != FLEET)
            .limit(2000)
        ).all()
    checks = [CheckRequest(u, a, c) for u, c in pairs for a in ("view", "make_payment")]
    decided = rt.decider.check_batch(checks[:1000])
    return {
        "typical": typical,
        "fleet": FLEET,
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

    # The cases were decided once already: their facts are remembered at this data version.
    add("check, allowed, warm", lambda: rt.decider.check(random.choice(c["allowed"])))
    add("check, denied, warm", lambda: rt.decider.check(random.choice(c["denied"])))
    report.add(
        engine,
        "in-process",
        "check right after a data change (data_version bumped: facts read)",
        _after_change(rt, c, max(50, calls // 5)),
        floor,
    )
    batch = [random.choice(c["allowed"] + c["denied"]) for _ in range(100)]
    add("check batch of 100, warm", lambda: rt.decider.check_batch(batch), max(20, calls // 20))
    report.add(
        engine,
        "in-process",
        "check batch of 100 right after a data change",
        _after_change(rt, c, max(20, calls // 20), lambda: rt.decider.check_batch(batch)),
        floor,
    )
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


def _after_change(
    rt: Runtime, c: dict[str, Any], calls: int, decide: Callable[[], object] | None = None
) -> list[float]:
    """Each decision (a random allowed check unless `decide`) timed alone, right after a
    write that bumps the data version, so no remembered facts answer it."""
    out = []
    for i in range(calls):
        rt.directory.put_site("bench-scratch", f"Scratch {i}", None, True, datetime.now(UTC))
        request = random.choice(c["allowed"])
        t = time.perf_counter()
        decide() if decide is not None else rt.decider.check(request)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _pager(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    """Pages of a list, one per call, starting over at the end."""
    cursor = None
    while True:
        page = fetch(cursor)
        cursor = page.next_cursor
        yield page


def over_http(
    url: str, key: str, c: dict[str, Any], report: Report, engine: str, calls: int
) -> None:
    with served(url) as srv:
        base = srv.base
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


def sync_rate(engine: str, report: Report) -> None:
    """Contract records applied per second, one 100,000-contract batch into an empty store."""
    if engine == "sqlite":
        url, keep = sync.sqlite_store()
    else:
        url, keep = sync.postgresql_store(PG_URL), None
    f = sync.measure(url)
    print(f"\n[{engine}] sync of one {f.contracts}-contract batch")
    report.figure(engine, "sync", "validate the batch", f.per_second(f.validate_s), "contracts/s")
    report.figure(
        engine, "sync", "apply, into an empty store", f.per_second(f.first_apply_s), "contracts/s"
    )
    report.figure(
        engine,
        "sync",
        "apply again, a later extract (every party list replaced)",
        f.per_second(f.update_apply_s),
        "contracts/s",
    )
    if keep is not None:
        keep.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contracts", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--load-seconds", type=int, default=8)
    args = parser.parse_args()
    random.seed(1)
    report = Report()
    for engine in args.engines.split(","):
        url = world(engine, args.contracts, args.accounts)
        emptied = empty_log(url)
        # Counting the fleet lessee's contracts is setup, not a measurement: it reads the whole
        # list (and with it much of the file) and may run past the service's read deadline
        # when the file is cold, so it gets its own, long one.
        with Runtime.open(Settings(database_url=url, read_timeout_ms=600_000)) as rt:
            fleet_rows = len(list(_all(rt, FLEET)))
        with Runtime.open(Settings(database_url=url)) as rt:
            c = cases(rt)
            print(
                f"\n{engine}: {args.contracts} contracts; {len(c['typical'])} typical users; "
                f"the fleet lessee may view {fleet_rows}; the decision log emptied "
                f"({emptied} entries from earlier runs)"
            )
            in_process(rt, c, report, engine, args.calls)
            cedar_section(rt, c, report, engine, args.calls)
            key = rt.keys.create(
                f"bench-{datetime.now(UTC):%Y%m%d%H%M%S%f}",
                frozenset({"decide"}),
                datetime.now(UTC),
            )
        over_http(url, key, c, report, engine, args.calls)
        under_load(url, key, c, report, engine, args.load_seconds)
        sync_rate(engine, report)
    found = targets.verdicts(report.rows, args.engines.split(","))
    targets.show(found)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "at": datetime.now(UTC).isoformat(),
        "contracts": args.contracts,
        "accounts": args.accounts,
        "rows": report.rows,
        "targets": targets.as_json(found),
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
