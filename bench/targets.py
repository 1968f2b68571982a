"""The targets of `make bench` (issue 5), read off the figures of one run: each one met or
missed, and by how much, per engine, with the spread over the rounds where there were some.

The flat-out p99 is shown beside the least the empty endpoint's own throughput allows: with
`connections` connections each sending its next request when its last is answered, the mean
latency is connections / throughput (Little's law), whatever a request costs, so a p99
under the target needs a throughput above connections / target, and more, as the p99 sits
above the mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

CONNECTIONS = 8


@dataclass(frozen=True)
class Verdict:
    engine: str
    target: str
    value: float | None  # None: the run has no such figure (an engine or part not run)
    unit: str
    limit: float
    at_least: bool
    met: bool | None
    by: float | None  # how far short of the limit, in `unit`, when missed
    low: float | None = None  # the least and greatest round, where there were rounds
    high: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Target:
    name: str
    unit: str
    limit: float
    at_least: bool  # met when value >= limit; else when value < limit
    read: Callable[[dict[str, dict[str, Any]]], tuple[float, float | None, float | None] | None]
    note: Callable[[dict[str, dict[str, Any]]], str] = lambda rows: ""


def _row(name: str, field: str) -> Callable[[dict[str, dict[str, Any]]], Any]:
    """A figure of one row with its rounds' spread, or None when the run lacks the row."""

    def read(rows: dict[str, dict[str, Any]]) -> tuple[float, float | None, float | None] | None:
        row = rows.get(name)
        if row is None or row.get(field) is None:
            return None
        return float(row[field]), row.get("rounds_min"), row.get("rounds_max")

    return read


def _ratio(top: str, bottom: str) -> Callable[[dict[str, dict[str, Any]]], Any]:
    """p50 of one row over p50 of another."""

    def read(rows: dict[str, dict[str, Any]]) -> tuple[float, None, None] | None:
        if top not in rows or bottom not in rows or not rows[bottom]["p50_ms"]:
            return None
        return rows[top]["p50_ms"] / rows[bottom]["p50_ms"], None, None

    return read


def _p99_rounds(name: str) -> Callable[[dict[str, dict[str, Any]]], Any]:
    """The median round's p99, with the least and greatest round's."""

    def read(rows: dict[str, dict[str, Any]]) -> tuple[float, float | None, float | None] | None:
        row = rows.get(name)
        if row is None:
            return None
        rounds = row.get("rounds_p99_ms") or [row["p99_ms"]]
        return float(row["p99_ms"]), min(rounds), max(rounds)

    return read


def _little_bound(rows: dict[str, dict[str, Any]]) -> str:
    floor = rows.get(f"GET /healthz (floor), {CONNECTIONS} connections")
    if floor is None or not floor.get("value"):
        return ""
    mean_ms = 1000 * CONNECTIONS / floor["value"]
    note = (
        f"the empty endpoint's own p99 {floor['p99_ms']:.2f} ms; at its "
        f"{floor['value']:.0f}/s the mean latency of {CONNECTIONS} connections is already "
        f"{mean_ms:.2f} ms"
    )
    inside = rows.get(INSIDE)
    if inside is not None:
        note += f"; inside the workers the checks' p99 was at most {inside['value']:g} ms"
    return note


def _batch_costs(rows: dict[str, dict[str, Any]]) -> str:
    """Where a batched decision's server CPU went, beside what 20 times a single check's
    throughput allows it: the decision log's share (its writer threads in the workers, a log
    writer process, the database server storing its rows) grows with the decisions, where
    much of a single check's cost is the request's own."""
    single, batch = rows.get(CHECK_8) or {}, rows.get(BATCH_8) or {}
    if single.get("worker_cpu_us") is None or batch.get("worker_cpu_us") is None:
        return ""

    def parts(row: dict[str, Any], per: int) -> dict[str, float]:
        background = row.get("worker_background_cpu_us") or 0.0
        return {
            "answering requests": (row["worker_cpu_us"] - background) / per,
            "the workers' other threads (the decision log's writer)": background / per,
            "the log writer process": (row.get("log_writer_cpu_us") or 0.0) / per,
            "the database server": (row.get("database_cpu_us") or 0.0) / per,
        }

    each = parts(batch, 100)
    whole = sum(parts(single, 1).values())
    shown = ", ".join(f"{name} {us:.1f}" for name, us in each.items() if round(us, 1) > 0)
    return (
        f"server CPU per decision in a batch {sum(each.values()):.1f} us ({shown}); per single "
        f"check {whole:.0f} us, so 20 times its throughput allows a batched decision "
        f"{whole / 20:.1f} us"
    )


CHECK_8 = f"POST /v1/check, {CONNECTIONS} connections"
BATCH_8 = f"POST /v1/check/batch of 100, {CONNECTIONS} connections"
INSIDE = f"check p99 inside the worker, {CONNECTIONS} connections flat out (at most, by bucket)"
TARGETS = (
    Target(
        "warm check / cedarpy's, in-process",
        "x",
        1.0,
        False,
        _ratio(
            "ours: decider.check, warm (store's version read + policy + log)",
            "cedar: is_authorized, entities built per call",
        ),
    ),
    Target(
        "check right after a data change, p50",
        "ms",
        2.0,
        False,
        _row("check right after a data change (data_version bumped: facts read)", "p50_ms"),
    ),
    Target(
        f"check throughput / empty endpoint's, {CONNECTIONS} connections",
        "%",
        70.0,
        True,
        _row(f"check throughput / empty endpoint's, {CONNECTIONS} connections", "value"),
    ),
    Target(
        f"check p99, {CONNECTIONS} connections flat out",
        "ms",
        5.0,
        False,
        _p99_rounds(CHECK_8),
        _little_bound,
    ),
    Target(
        "batch of 100 / single checks, decisions/s",
        "x",
        20.0,
        True,
        _row(f"batch decisions/s / single checks' decisions/s, {CONNECTIONS} connections", "value"),
        _batch_costs,
    ),
    Target(
        "sync into an empty store",
        "contracts/s",
        5000.0,
        True,
        _row("apply, into an empty store", "value"),
    ),
    Target(
        "sync of a later extract",
        "contracts/s",
        5000.0,
        True,
        _row("apply again, a later extract (every party list replaced)", "value"),
    ),
    Target(
        "peak RSS of the largest worker",
        "MB",
        200.0,
        False,
        _row("peak RSS of the largest worker", "value"),
    ),
)


def verdicts(rows: list[dict[str, Any]], engines: list[str]) -> list[Verdict]:
    """Each target for each engine, from the report's rows."""
    out = []
    for engine in engines:
        by_name = {r["name"]: r for r in rows if r["engine"] == engine}
        for t in TARGETS:
            got = t.read(by_name)
            if got is None:
                out.append(Verdict(engine, t.name, None, t.unit, t.limit, t.at_least, None, None))
                continue
            value, low, high = got
            met = value >= t.limit if t.at_least else value < t.limit
            by = None if met else round(abs(value - t.limit), 2)
            out.append(
                Verdict(
                    engine,
                    t.name,
                    value,
                    t.unit,
                    t.limit,
                    t.at_least,
                    met,
                    by,
                    low,
                    high,
                    t.note(by_name),
                )
            )
    return out


def show(found: list[Verdict]) -> None:
    """Print the verdicts, one line each."""
    print("\ntargets (issue 5), read off this run")
    for v in found:
        if v.value is None:
            print(f"  [{v.engine}] {v.target}: not measured in this run")
            continue
        spread = f" (rounds {v.low:g}-{v.high:g})" if v.low is not None else ""
        sign = "at least" if v.at_least else "under"
        unit = "points" if v.unit == "%" else v.unit
        verdict = "met" if v.met else f"MISSED by {v.by:g} {unit}"
        print(
            f"  [{v.engine}] {v.target}: {v.value:.2f} {v.unit}{spread}; "
            f"target {sign} {v.limit:g}: {verdict}"
        )
        if v.note:
            print(f"      {v.note}")


def as_json(found: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in found]
