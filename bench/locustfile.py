"""Load for `make bench` (bench/load.py runs it headless, from a second process).

BENCH_KEY: an API key with the decide scope; BENCH_CASES: a JSON file of check bodies.
One user class per scenario, chosen on the command line. Users wait for nothing, except in
the paced scenarios, where each sends BENCH_RATE_PER_USER requests per second: latency at a
load the service keeps up with, not at saturation, where it only measures the queue.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, constant_throughput, task

KEY = os.environ.get("BENCH_KEY", "")
CASES = (
    json.loads(Path(os.environ["BENCH_CASES"]).read_text()) if "BENCH_CASES" in os.environ else []
)
# Encoded once: the load generator shares the machine's cores with the service, and its own
# work per request should differ as little as possible between the scenarios it compares.
BODIES = [json.dumps(c).encode() for c in CASES]
RATE_PER_USER = float(os.environ.get("BENCH_RATE_PER_USER", "1"))
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


class Healthz(FastHttpUser):
    """The empty endpoint served by the same gunicorn: the floor."""

    @task
    def healthz(self) -> None:
        self.client.get("/healthz")


class Check(FastHttpUser):
    @task
    def check(self) -> None:
        self.client.post("/v1/check", data=random.choice(BODIES), headers=HEADERS)


class Batch(FastHttpUser):
    @task
    def batch(self) -> None:
        body = {"checks": random.sample(CASES, 100)}
        self.client.post("/v1/check/batch", data=json.dumps(body), headers=HEADERS)


class HealthzPaced(Healthz):
    wait_time = constant_throughput(RATE_PER_USER)


class CheckPaced(Check):
    wait_time = constant_throughput(RATE_PER_USER)
