"""A real gunicorn with the shipped config: fixtures over HTTP; a crash loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from authz.config import ROOT, Settings
from authz.fixtures import run_paths
from authz.fixtures_http import HttpTarget
from authz.runtime import Runtime
from tests.conftest import POLICIES, T0

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, database_url: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": database_url, "WEB_CONCURRENCY": "2"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "-c",
                "service/gunicorn_conf.py",
                "-b",
                f"127.0.0.1:{self.port}",
                "service.wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("gunicorn did not become ready")

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a graceful stop."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[Server, str]]:
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide", "manage", "sync", "audit"}), T0)
    srv = Server(settings.database_url)
    srv.start()
    yield srv, key
    srv.kill()


def test_fixtures_pass_against_the_live_service(server: tuple[Server, str]) -> None:
    srv, key = server
    target = HttpTarget(srv.url, key)
    results = run_paths([POLICIES / "tests"], target, target.actions())
    assert sum(r.cases for r in results) >= 40
    assert [f for r in results for f in r.failures] == []


def test_what_was_answered_survives_a_crash(server: tuple[Server, str]) -> None:
    srv, key = server
    h = {"Authorization": f"Bearer {key}"}
    s = requests.Session()
    assert s.put(f"{srv.url}/v1/sites/default", json={"name": "D"}, headers=h).status_code == 201
    batch = {
        "source": "aspire-prod",
        "batch_id": "crash#1",
        "extracted_at": T0.isoformat(),
        "accounts": [{"account_id": "A1", "name": "A"}],
        "contracts": [
            {
                "contract_id": "C1",
                "private_label": None,
                "state": "active",
                "parties": [{"account_id": "A1", "role_type": "Customer"}],
            }
        ],
    }
    assert s.post(f"{srv.url}/v1/aspire/batches", json=batch, headers=h).json()["applied"]
    user = {"site_id": "default", "email": "u@example.com"}
    assert s.put(f"{srv.url}/v1/users/u1", json=user, headers=h).status_code == 201
    link = s.post(f"{srv.url}/v1/users/u1/accounts", json={"account_id": "A1"}, headers=h)
    assert link.status_code == 201
    srv.kill()
    srv.start()
    got = requests.get(f"{srv.url}/v1/users/u1", headers=h).json()
    assert [a["account_id"] for a in got["linked_accounts"]] == ["A1"]
    check = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    assert requests.post(f"{srv.url}/v1/check", json=check, headers=h).json()["allowed"] is True


def test_a_policy_failing_its_fixtures_stops_the_start(settings: Settings, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(POLICIES, tmp_path / "p")
    polar = tmp_path / "p" / "contract_access.polar"
    polar.write_text(polar.read_text().replace('party_role("Guarantor");', ""))
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "AUTHZ_POLICY_DIR": str(tmp_path / "p"),
    }
    done = subprocess.run(
        [
            str(BIN / "gunicorn"),
            "-c",
            "service/gunicorn_conf.py",
            "-b",
            f"127.0.0.1:{_free_port()}",
            "service.wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and "fixture" in done.stderr
