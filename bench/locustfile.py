"""Load for `make bench` (bench/load.py runs it headless, from a second process).

BENCH_KEY: an API key with the decide scope; BENCH_CASES: a JSON file of check bodies.
One user class per scenario, chosen on the command line; users wait for nothing.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, task

KEY = os.environ.get("BENCH_KEY", "")
CASES = (
    json.loads(Path(os.environ["BENCH_CASES"]).read_text()) if "BENCH_CASES" in os.environ else []
)
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


class Healthz(FastHttpUser):
    """The empty endpoint served by the same gunicorn: the floor."""

    @task
    def healthz(self) -> None:
        self.client.get("/healthz")


class Check(FastHttpUser):
    @task
    def check(self) -> None:
        self.client.post("/v1/check", data=json.dumps(random.choice(CASES)), headers=HEADERS)


class Batch(FastHttpUser):
    @task
    def batch(self) -> None:
        body = {"checks": random.sample(CASES, 100)}
        self.client.post("/v1/check/batch", data=json.dumps(body), headers=HEADERS)
