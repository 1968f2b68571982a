"""`make bench`'s load section: wrk from a second process against the shipped gunicorn config
(bench/load.py), at 1, 8 and 64 connections, beside /healthz under the same load."""

from __future__ import annotations

import statistics
from typing import Any

import requests

from bench import load
from bench.common import Report, served

# Rounds of the 8-connection runs (the empty endpoint, single checks, batches), taken in
# alternation: these machines are shared, and what slows one for a while slows the others of
# the same round alike. Their ratios are read per round; the report gives the median round and
# the spread over all of them.
ROUNDS = 3


def under_load(
    url: str, key: str, c: dict[str, Any], report: Report, engine: str, seconds: int
) -> None:
    """Throughput at 1, 8 and 64 connections from wrk, beside /healthz in the same run."""
    bodies = [
        {"user_id": r.user_id, "action": r.action, "contract_id": r.contract_id}
        for r in c["allowed"] + c["denied"]
    ]
    with served(url) as srv:
        print(f"\n[{engine}] under load: wrk from a second process, {seconds} s each")
        _warm(srv.base, key, bodies)

        def run(mode: str, users: int, rate: float | None = None) -> load.Load:
            load.settle(srv.pid)
            return load.run(srv.base, key, bodies, mode, users, seconds, srv.pid, rate)

        timed_before = load.answered_within(srv.base, "/v1/check")
        rounds = [(run("get", 8), run("check", 8), run("batch", 8)) for _ in range(ROUNDS)]
        inside = load.share_within(timed_before, load.answered_within(srv.base, "/v1/check"))
        for i, (floor, got, batch) in enumerate(rounds, 1):
            print(
                f"  round {i} of {ROUNDS}, 8 connections: /healthz {floor.requests_per_s:.0f}/s "
                f"p99 {floor.p99_ms:.2f} ms; check {got.requests_per_s:.0f}/s p99 "
                f"{got.p99_ms:.2f} ms ({100 * got.requests_per_s / floor.requests_per_s:.1f}%); "
                f"batch {100 * batch.requests_per_s:.0f} decisions/s "
                f"({100 * batch.requests_per_s / got.requests_per_s:.1f}x)"
            )
        floors, singles, batches = (list(runs) for runs in zip(*rounds, strict=True))
        for users in (1, 8, 64):
            if users == 8:
                floor, got = _median_run(floors), _median_run(singles)
                ratio = _spread(
                    [
                        g.requests_per_s / f.requests_per_s
                        for f, g in zip(floors, singles, strict=True)
                    ]
                )
                cpu = _spread(
                    [_server_cpu(f) / _server_cpu(g) for f, g in zip(floors, singles, strict=True)]
                )
            else:
                floor, got = run("get", users), run("check", users)
                ratio = _spread([got.requests_per_s / floor.requests_per_s])
                cpu = _spread([_server_cpu(floor) / _server_cpu(got)])
            pairs = ((floors, floor, "GET /healthz (floor)"), (singles, got, "POST /v1/check"))
            for runs, shown, name in pairs:
                report.figure(
                    engine,
                    "http load",
                    f"{name}, {users} connections",
                    shown.requests_per_s,
                    "requests/s",
                    p50_ms=shown.p50_ms,
                    p99_ms=shown.p99_ms,
                    failures=shown.failures,
                    **_failed(shown),
                    worker_cpu_us=shown.worker_cpu_us,
                    worker_background_cpu_us=shown.worker_background_cpu_us,
                    log_writer_cpu_us=shown.log_writer_cpu_us,
                    database_cpu_us=shown.database_cpu_us,
                    **(_rounds(runs) if users == 8 else {}),
                )
            report.figure(
                engine,
                "http load",
                f"check throughput / empty endpoint's, {users} connections",
                100 * ratio[0],
                "%",
                **_range(ratio, 100),
            )
            # The same comparison by what the server spends, which the load generator
            # (sharing these two cores) does not blur: CPU per empty request / per check.
            report.figure(
                engine,
                "http load",
                f"server CPU per empty request / per check, {users} connections",
                100 * cpu[0],
                "%",
                **_range(cpu, 100),
            )
        # The same checks as the workers timed them, from arrival in Flask to the answer: what
        # of the latency wrk sees is the service's own, and what is the wait before it.
        _inside(report, engine, "8 connections flat out", inside)
        # Latency where the service keeps up: 8 connections sending, in all, half of what
        # the empty endpoint answered at 8. At saturation (above) every connection waits in
        # the queue, and the latency is connections / throughput whatever a request costs.
        rate = round(_median_run(floors).requests_per_s / 2)
        # /healthz answers no check: what the histogram gains meanwhile is the paced checks.
        timed_before = load.answered_within(srv.base, "/v1/check")
        for mode, name in (("get", "GET /healthz (floor)"), ("check", "POST /v1/check")):
            paced = run(mode, 8, rate)
            report.figure(
                engine,
                "http load",
                f"{name}, 8 connections paced at about {rate} requests/s in all",
                paced.requests_per_s,
                "requests/s",
                p50_ms=paced.p50_ms,
                p99_ms=paced.p99_ms,
                failures=paced.failures,
                **_failed(paced),
            )
        inside = load.share_within(timed_before, load.answered_within(srv.base, "/v1/check"))
        _inside(report, engine, f"8 connections paced at about {rate} requests/s", inside)
        batch = _median_run(batches)
        report.figure(
            engine,
            "http load",
            "POST /v1/check/batch of 100, 8 connections",
            batch.requests_per_s * 100,
            "decisions/s",
            p50_ms=batch.p50_ms,
            p99_ms=batch.p99_ms,
            failures=batch.failures,
            **_failed(batch),
            worker_cpu_us=batch.worker_cpu_us,
            worker_background_cpu_us=batch.worker_background_cpu_us,
            log_writer_cpu_us=batch.log_writer_cpu_us,
            database_cpu_us=batch.database_cpu_us,
            **_rounds(batches, 100),
        )
        times = _spread(
            [
                b.requests_per_s * 100 / g.requests_per_s
                for g, b in zip(singles, batches, strict=True)
            ]
        )
        report.figure(
            engine,
            "http load",
            "batch decisions/s / single checks' decisions/s, 8 connections",
            times[0],
            "x",
            **_range(times),
        )
        by_cpu = _spread(
            [_server_cpu(g) / (_server_cpu(b) / 100) for g, b in zip(singles, batches, strict=True)]
        )
        report.figure(
            engine,
            "http load",
            "server CPU per single check / per decision in a batch, 8 connections",
            by_cpu[0],
            "x",
            **_range(by_cpu),
        )
        peaks = load.peak_rss_mb(load.workers_of(srv.pid))
        report.figure(
            engine, "memory", "peak RSS of the largest worker", max(peaks), "MB", workers=len(peaks)
        )
        for peak in load.peak_rss_mb(load.log_writers_of(srv.pid)):
            report.figure(engine, "memory", "peak RSS of the log writer", peak, "MB")


def _inside(report: Report, engine: str, how: str, shares: dict[float, float]) -> None:
    """The p99 of checks inside the worker, to its histogram's bucket, and the share of them
    answered there within 1 and 5 ms."""
    p99 = load.bound_of(shares)
    if p99 is None:
        return
    report.figure(
        engine,
        "http load",
        f"check p99 inside the worker, {how} (at most, by bucket)",
        1000 * p99,
        "ms",
        within_1_ms=round(100 * shares.get(0.001, 0.0), 2),
        within_5_ms=round(100 * shares.get(0.005, 0.0), 2),
    )


def _median_run(runs: list[load.Load]) -> load.Load:
    """Each figure the median over the runs (failures: their sum)."""

    def mid(name: str) -> Any:
        return statistics.median(getattr(r, name) for r in runs)

    return load.Load(
        runs[0].mode,
        runs[0].users,
        mid("requests_per_s"),
        mid("p50_ms"),
        mid("p99_ms"),
        sum(r.requests for r in runs),
        sum(r.failures for r in runs),
        mid("worker_cpu_us"),
        mid("log_writer_cpu_us"),
        mid("database_cpu_us"),
        "; ".join(r.failed_with for r in runs if r.failed_with),
        mid("worker_background_cpu_us"),
    )


def _spread(xs: list[float]) -> tuple[float, float, float]:
    """The median, the least and the greatest."""
    return statistics.median(xs), min(xs), max(xs)


def _range(spread: tuple[float, float, float], scale: float = 1) -> dict[str, Any]:
    """The spread over the rounds, for the report; nothing for a single run."""
    _, low, high = spread
    if low == high:
        return {}
    return {"rounds_min": round(low * scale, 1), "rounds_max": round(high * scale, 1)}


def _rounds(runs: list[load.Load], per: int = 1) -> dict[str, Any]:
    """Each round's throughput and p99, for the report."""
    return {
        "rounds_per_s": [round(r.requests_per_s * per) for r in runs],
        "rounds_p99_ms": [r.p99_ms for r in runs],
    }


def _failed(run: load.Load) -> dict[str, str]:
    """What the failures were, when there were any: a figure with failures is not clean."""
    return {"failed_with": run.failed_with} if run.failed_with else {}


def _warm(base: str, key: str, bodies: list[dict[str, Any]], rounds: int = 12) -> None:
    """Every case decided in every worker, as in a service that has been answering a while:
    each worker remembers the facts it has read (per data version). Batches of 100, each
    sent `rounds` times on new connections: the kernel hands each to any worker, so each
    worker misses a given batch with a chance of (1/2)^12 with two workers, (2/3)^12 with
    three: under 1% either way."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {key}"
    for _ in range(rounds):
        for start in range(0, len(bodies), 100):
            r = s.post(
                f"{base}/v1/check/batch",
                json={"checks": bodies[start : start + 100]},
                headers={"Connection": "close"},
            )
            r.raise_for_status()


def _server_cpu(run: load.Load) -> float:
    """CPU microseconds the workers, the log writer and the database server spent per request."""
    return max(run.worker_cpu_us + run.log_writer_cpu_us + run.database_cpu_us, 0.1)
