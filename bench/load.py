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


def run(
    base: str, key: str, cases: list[dict[str, Any]], scenario: str, users: int, seconds: int = 8
) -> Load:
    """Run `scenario` (Healthz, Check or Batch) with `users` concurrent connections."""
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
            env={**os.environ, "BENCH_KEY": key, "BENCH_CASES": str(cases_file)},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(f"{prefix}_stats.csv") as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return Load(
        scenario,
        users,
        float(total["Requests/s"]),
        float(total["50%"]),
        float(total["99%"]),
        int(total["Request Count"]),
        int(total["Failure Count"]),
    )


def peak_rss_mb(master_pid: int) -> list[float]:
    """VmHWM (peak resident set) of each child of the gunicorn master, in MB."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    peaks = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks
