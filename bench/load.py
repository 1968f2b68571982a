"""HTTP load from a second process (locust, headless) against the shipped gunicorn config.

For each scenario and number of connections, locust runs for a few seconds and its summary
gives requests/s and the p50/p99 latency; the empty endpoint (`/healthz`) is measured the
same way in the same run, so throughput is read as a ratio to it. Afterwards the peak
resident memory of every worker is read from /proc.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz.config import ROOT

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class Load:
    scenario: str
    users: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int
    # CPU the service's workers and the database server spent per request: what a request
    # costs whatever the load generator (which shares these cores) costs itself.
    worker_cpu_us: float
    database_cpu_us: float
    failed_with: str  # locust's account of each kind of failure, "" when none failed


def run(
    base: str,
    key: str,
    cases: list[dict[str, Any]],
    scenario: str,
    users: int,
    seconds: int = 8,
    master_pid: int | None = None,
    rate: float | None = None,
) -> Load:
    """Run `scenario` (Healthz, Check or Batch; HealthzPaced or CheckPaced at `rate`
    requests/s in all) with `users` concurrent connections; with `master_pid` (gunicorn's),
    the CPU its workers and the database server spent too."""
    workers = workers_of(master_pid) if master_pid is not None else []
    before = cpu_seconds(workers), cpu_seconds(database_server_pids())
    with tempfile.TemporaryDirectory(prefix="authz-load-") as tmp:
        cases_file = Path(tmp) / "cases.json"
        cases_file.write_text(json.dumps(cases))
        prefix = Path(tmp) / "stats"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "locust"),
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--only-summary",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{seconds}s",
                "--host",
                base,
                "--csv",
                str(prefix),
                "--exit-code-on-error",
                "0",
                "--loglevel",
                "ERROR",
                scenario,
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "BENCH_KEY": key,
                "BENCH_CASES": str(cases_file),
                "BENCH_RATE_PER_USER": str((rate or users) / users),
            },
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(f"{prefix}_stats.csv") as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        with open(f"{prefix}_failures.csv") as f:
            why = "; ".join(f"{r['Occurrences']}x {r['Error']}" for r in csv.DictReader(f))
    spent = (
        cpu_seconds(workers) - before[0],
        cpu_seconds(database_server_pids()) - before[1],
    )
    count = max(1, int(total["Request Count"]))
    return Load(
        scenario,
        users,
        float(total["Requests/s"]),
        float(total["50%"]),
        float(total["99%"]),
        int(total["Request Count"]),
        int(total["Failure Count"]),
        round(spent[0] / count * 1e6, 1),
        round(spent[1] / count * 1e6, 1),
        why,
    )


def workers_of(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


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
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def peak_rss_mb(master_pid: int) -> list[float]:
    """VmHWM (peak resident set) of each child of the gunicorn master, in MB."""
    peaks = []
    for pid in workers_of(master_pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks
