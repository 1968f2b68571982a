"""HTTP load from a second process (wrk, Debian's package) against the shipped gunicorn config.

For each scenario and number of connections, wrk runs for a few seconds and reports
requests/s and the p50/p99 latency; the empty endpoint (`/healthz`) is measured the same way
in the same run, so throughput is read as a ratio to it. wrk is written in C and spends a
few percent of a core where a Python load generator spends one of the two cores the service
has here, which flattered every ratio to the empty endpoint (a locust run gave 73.7% where
wrk, the same minute, gave 60.5-64.8%). Afterwards the peak resident memory of every worker
is read from /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from authz.config import ROOT

SCRIPT = Path(__file__).with_name("load.lua")
# What the script asks for: the empty endpoint, one check, or a batch of 100.
MODES = ("get", "check", "batch")


@dataclass(frozen=True)
class Load:
    mode: str
    users: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int
    # CPU the service's workers, its log writer and the database server spent per request:
    # what a request costs whatever the load generator (which shares these cores) costs.
    worker_cpu_us: float
    log_writer_cpu_us: float
    database_cpu_us: float
    failed_with: str  # wrk's count of each kind of failure, "" when none failed
    # Of worker_cpu_us, what the workers' threads other than the one answering requests
    # spent: the decision log's writer, and on PostgreSQL the version watch, which waits.
    worker_background_cpu_us: float = 0.0


def wrk() -> str:
    """The wrk binary. `make bench` installs Debian's package when it is missing.

    :raises SystemExit: when there is none.
    """
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("the benchmark's load generator is wrk: apt-get install wrk")
    return found


def run(
    base: str,
    key: str,
    cases: list[dict[str, Any]],
    mode: str,
    users: int,
    seconds: int = 8,
    master_pid: int | None = None,
    rate: float | None = None,
) -> Load:
    """Run `mode` (one of MODES) over `users` connections, as fast as each is answered or,
    with `rate`, each waiting after every answer so that all send about `rate` requests/s;
    with `master_pid` (gunicorn's), the CPU its workers and the database server spent too."""
    if mode not in MODES:
        raise ValueError(f"mode is one of {MODES}, not {mode!r}")
    delay_ms = 0.0 if rate is None else max(1.0, 1000 * users / rate)
    workers = workers_of(master_pid) if master_pid is not None else []
    writers = log_writers_of(master_pid) if master_pid is not None else []
    with tempfile.TemporaryDirectory(prefix="authz-load-") as tmp:
        cases_file = Path(tmp) / "cases.jsonl"
        cases_file.write_text("".join(json.dumps(c) + "\n" for c in cases))
        before = cpu_seconds(workers), cpu_seconds(writers), cpu_seconds(database_server_pids())
        background_before = background_cpu_seconds(workers)
        out = subprocess.run(
            [
                wrk(),
                "-t1",
                f"-c{users}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(SCRIPT),
                base,
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "BENCH_MODE": mode,
                "BENCH_CASES": str(cases_file),
                "BENCH_KEY": key,
                "BENCH_DELAY_MS": f"{delay_ms:.0f}",
            },
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        spent = (
            cpu_seconds(workers) - before[0],
            cpu_seconds(writers) - before[1],
            cpu_seconds(database_server_pids()) - before[2],
        )
        background = background_cpu_seconds(workers) - background_before
    got = json.loads(out.strip().splitlines()[-1])
    kinds = ("connect", "read", "write", "status", "timeout")
    failures = sum(got[k] for k in kinds)
    count = max(1, got["requests"])
    return Load(
        mode,
        users,
        round(got["requests"] / got["seconds"], 1),
        got["p50_us"] / 1000,
        got["p99_us"] / 1000,
        got["requests"],
        failures,
        round(spent[0] / count * 1e6, 1),
        round(spent[1] / count * 1e6, 1),
        round(spent[2] / count * 1e6, 1),
        "; ".join(f"{got[k]}x {k}" for k in kinds if got[k]),
        round(background / count * 1e6, 1),
    )


def children_of(master_pid: int) -> dict[int, bytes]:
    """The gunicorn master's child processes (of any of its threads: the log writer is
    started again by one of its own), with their command lines."""
    found = {}
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for pid in map(int, pids):
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
    return found


def workers_of(master_pid: int) -> list[int]:
    return [pid for pid, cmd in children_of(master_pid).items() if LOG_WRITER not in cmd]


def log_writers_of(master_pid: int) -> list[int]:
    """The decision log's writer process (none when the workers write their own)."""
    return [pid for pid, cmd in children_of(master_pid).items() if LOG_WRITER in cmd]


LOG_WRITER = b"service.log_writer"


def database_server_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (none for SQLite, in-process)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:  # ended meanwhile
                continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes, summed (those gone count nothing)."""
    return sum(_stat_cpu(Path(f"/proc/{pid}/stat")) for pid in pids)


def background_cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes' threads other than their first (a
    gunicorn sync worker answers requests in its first thread), summed; threads gone since
    count nothing, so read it before and after a run that ends none."""
    total = 0.0
    for pid in pids:
        try:
            tasks = [t for t in Path(f"/proc/{pid}/task").iterdir() if t.name != str(pid)]
        except OSError:  # the process ended meanwhile
            continue
        total += sum(_stat_cpu(task / "stat") for task in tasks)
    return total


def _stat_cpu(stat: Path) -> float:
    """utime + stime of a process's or thread's `stat` file, in seconds; 0 when it is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(master_pid: int, busy: float = 0.05, window: float = 0.5, limit: float = 30.0) -> None:
    """Wait until the workers and the database server use under `busy` of a core over
    `window` seconds (at most `limit`): what a run left behind (the decision log's writers
    still storing a batch run's entries) is not counted against the next."""
    pids = list(children_of(master_pid))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pids) + cpu_seconds(database_server_pids())
        time.sleep(window)
        if cpu_seconds(pids) + cpu_seconds(database_server_pids()) - before < busy * window:
            return


def peak_rss_mb(pids: list[int]) -> list[float]:
    """VmHWM (peak resident set) of each of these processes, in MB."""
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def answered_within(base: str, route: str) -> dict[float, float]:
    """How many answers of `route` the service's workers timed at or under each bucket bound,
    in seconds (`authz_request_duration_seconds`, from the request's arrival in Flask to its
    answer): the time inside the worker, which neither the queue before it nor the load
    generator's share of the cores adds to."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "authz_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("route") == route:
                counts[float(sample.labels["le"])] = sample.value
    return counts


def share_within(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """Of the answers between two readings of `answered_within`, the share at or under each
    bound (the last bound, infinity, is 1)."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return {}
    return {le: (n - before.get(le, 0.0)) / total for le, n in sorted(after.items())}


def bound_of(shares: dict[float, float], share: float = 0.99) -> float | None:
    """The least bucket bound at or under which `share` of the answers were timed: the
    percentile, to the bucket."""
    return next((le for le, got in shares.items() if got >= share), None)
