"""A real gunicorn with the shipped config: fixtures over HTTP; a crash loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from authz.config import ROOT, Settings
from authz.fixtures import run_paths
from authz.fixtures_http import HttpTarget
from authz.runtime import Runtime
from tests.conftest import POLICIES, T0, World, contract

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, database_url: str, journal: Path | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": database_url, "WEB_CONCURRENCY": "2"}
        if journal is not None:
            self.env["AUTHZ_JOURNAL_DIR"] = str(journal)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None  # where stderr goes, when kept

    def start(self) -> None:
        stderr = self.log.open("ab") if self.log else None
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
            stderr=stderr or subprocess.DEVNULL,
        )
        if stderr is not None:
            stderr.close()  # the child has its own copy
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
    yield from _served(settings, "thread")


@pytest.fixture(params=["thread", "process"])
def either_writer(
    settings: Settings, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, str]]:
    """Served with a decision log writer thread in each worker, or a log writer process."""
    yield from _served(settings, request.param)


def _served(settings: Settings, writer: str) -> Iterator[tuple[Server, str]]:
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide", "manage", "sync", "audit"}), T0)
    srv = Server(settings.database_url, settings.journal())
    srv.env["AUTHZ_LOG_WRITER"] = writer
    srv.start()
    yield srv, key
    srv.kill()


def test_fixtures_pass_against_the_live_service(server: tuple[Server, str]) -> None:
    srv, key = server
    target = HttpTarget(srv.url, key)
    results = run_paths([POLICIES / "tests"], target, target.actions())
    assert sum(r.cases for r in results) >= 40
    assert [f for r in results for f in r.failures] == []


def test_what_was_answered_survives_a_crash(either_writer: tuple[Server, str]) -> None:
    srv, key = either_writer
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
    check = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    # Decisions answered just before the crash: their log entries were still to be written
    # (every second), and were in the workers' journals only.
    answered = [s.post(f"{srv.url}/v1/check", json=check, headers=h).json() for _ in range(20)]
    srv.kill()
    srv.start()
    got = requests.get(f"{srv.url}/v1/users/u1", headers=h).json()
    assert [a["account_id"] for a in got["linked_accounts"]] == ["A1"]
    assert requests.post(f"{srv.url}/v1/check", json=check, headers=h).json()["allowed"] is True
    wanted = {a["decision_id"] for a in answered}
    deadline = time.monotonic() + 20
    while True:  # the new workers write what the journals hold as they start
        logged = requests.get(f"{srv.url}/v1/decisions?limit=100", headers=h).json()["decisions"]
        missing = wanted - {d["decision_id"] for d in logged}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert missing == set()


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


class Hammer(threading.Thread):
    """Checks sent back to back until stopped; every answer that is not a 200 is kept."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []

    def run(self) -> None:
        s = requests.Session()
        h = {"Authorization": f"Bearer {self.key}"}
        body = {"user_id": "u1", "action": "view", "contract_id": "C1"}
        while not self.stop.is_set():
            try:
                r = s.post(f"{self.url}/v1/check", json=body, headers=h, timeout=10)
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                self.answered += 1
            except requests.RequestException as exc:
                self.failures.append(repr(exc))


def _served_version(url: str, key: str) -> str:
    got = requests.get(f"{url}/v1/policy", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    return str(got.json()["policy_version"])


def _wait_for_version(srv: Server, key: str, version: str, seconds: float = 60) -> bool:
    """True once every answer for a while comes from `version` (old workers are gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_served_version(srv.url, key) == version for _ in range(8)):
            return True
        time.sleep(0.2)
    return False


def _refusals(url: str) -> float:
    got = requests.get(f"{url}/metrics", timeout=5)
    assert got.status_code == 200, got.text
    text = got.text
    lines = [x for x in text.splitlines() if x.startswith("authz_policy_refusals_total ")]
    return float(lines[0].split()[1]) if lines else 0.0


def test_sighup_serves_only_a_policy_that_passes_and_drops_no_request(
    settings: Settings, tmp_path: Path
) -> None:
    import shutil

    from authz.policy import Policy

    policy_dir = tmp_path / "p"
    shutil.copytree(POLICIES, policy_dir)
    polar = policy_dir / "contract_access.polar"
    good = polar.read_text()
    first = Policy.load(policy_dir).version
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide", "manage", "sync", "audit"}), T0)
    srv = Server(settings.database_url, settings.journal())
    srv.env["AUTHZ_POLICY_DIR"] = str(policy_dir)
    srv.start()
    hammer = Hammer(srv.url, key)
    hammer.start()
    try:
        assert _served_version(srv.url, key) == first
        # Compiles but breaks a rule: its fixtures fail; then one that does not compile.
        for bad in (good.replace('party_role("Guarantor");', ""), good + "\nallow(;\n"):
            refused = _refusals(srv.url)
            polar.write_text(bad)
            os.kill(srv.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
            deadline = time.monotonic() + 60
            while _refusals(srv.url) < refused + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _refusals(srv.url) == refused + 1
            assert _served_version(srv.url, key) == first
        # A change that passes (a comment is enough to make a new version) goes into service.
        polar.write_text(good + "\n# reviewed again\n")
        second = Policy.load(policy_dir).version
        os.kill(srv.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        assert _wait_for_version(srv, key, second)
        # Editing the files is not serving them: a worker that starts now loads the checked copy.
        polar.write_text(good.replace('party_role("Guarantor");', ""))
        os.kill(srv.proc.pid, signal.SIGTTIN)  # type: ignore[union-attr]  # one more worker
        time.sleep(3)
        assert all(_served_version(srv.url, key) == second for _ in range(12))
    finally:
        hammer.stop.set()
        hammer.join(timeout=15)
        srv.kill()
    assert hammer.answered > 50
    assert hammer.failures == []


def test_metrics_sum_every_worker(settings: Settings, tmp_path: Path) -> None:
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide"}), T0)
    srv = Server(settings.database_url, settings.journal())
    srv.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    srv.start()
    try:
        h = {"Authorization": f"Bearer {key}"}
        body = {"user_id": "nobody", "action": "view", "contract_id": "C1"}
        for _ in range(40):  # sync workers close each connection: the workers share them
            r = requests.post(f"{srv.url}/v1/check", json=body, headers=h, timeout=5)
            assert r.status_code == 200
        text = requests.get(f"{srv.url}/metrics", timeout=5).text
    finally:
        srv.kill()
    line = 'authz_decisions_total{action="view",allowed="false",endpoint="check"} '
    assert [x for x in text.splitlines() if x.startswith(line)] == [line + "40.0"]


def test_logs_are_json_lines_carrying_the_request_id(settings: Settings, tmp_path: Path) -> None:
    import json

    with Runtime.open(settings) as rt:
        key = rt.keys.create("portal-web", frozenset({"decide"}), T0)
    srv = Server(settings.database_url, settings.journal())
    srv.env["AUTHZ_ACCESS_LOG"] = "1"
    srv.log = tmp_path / "stderr.log"
    srv.start()
    try:
        h = {"Authorization": f"Bearer {key}", "X-Request-Id": "ticket-4711"}
        body = {"user_id": "u", "action": "view", "contract_id": "C1"}
        assert requests.post(f"{srv.url}/v1/check", json=body, headers=h).status_code == 200
        time.sleep(0.5)
    finally:
        srv.kill()
    lines = [json.loads(x) for x in srv.log.read_text().splitlines() if x.strip()]
    assert all({"time", "level", "name", "message"} <= set(x) for x in lines)
    assert any("passed its fixtures" in x["message"] for x in lines)  # gunicorn's master
    [line] = [x for x in lines if x.get("request_id") == "ticket-4711"]
    assert line["name"] == "authz.access" and line["route"] == "/v1/check"
    assert line["status"] == 200 and line["caller"] == "portal-web" and line["duration_ms"] > 0


def _linked_user(settings: Settings, user: str, account: str) -> str:
    """A store where `user` (site "default") is linked to `account`, a Customer of contract
    C1; the key (decide, manage, sync) to ask with."""
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide", "manage", "sync"}), T0)
        world = World(rt)
        world.site("default")
        world.sync([contract("C1", f"{account}:Customer")])
        world.user(user, "default", account)
    return key


def test_an_unlink_is_seen_by_the_very_next_check_on_every_worker(settings: Settings) -> None:
    key = _linked_user(settings, "u1", "A1")
    srv = Server(settings.database_url, settings.journal())
    srv.env["WEB_CONCURRENCY"] = "3"
    srv.start()
    try:
        h = {"Authorization": f"Bearer {key}"}
        body = {"user_id": "u1", "action": "view", "contract_id": "C1"}

        def answers(n: int) -> list[bool]:  # each on a new connection: the workers share them
            return [
                requests.post(f"{srv.url}/v1/check", json=body, headers=h, timeout=5).json()[
                    "allowed"
                ]
                for _ in range(n)
            ]

        assert answers(30) == [True] * 30  # every worker has answered, warm
        gone = requests.delete(f"{srv.url}/v1/users/u1/accounts/A1", headers=h, timeout=5)
        assert gone.status_code == 204
        assert answers(30) == [False] * 30
        back = requests.post(
            f"{srv.url}/v1/users/u1/accounts", json={"account_id": "A1"}, headers=h, timeout=5
        )
        token = back.json()["data_version"]
        assert answers(30) == [True] * 30
        pinned = {**body, "min_data_version": token}
        got = requests.post(f"{srv.url}/v1/check", json=pinned, headers=h, timeout=5).json()
        assert got["allowed"] is True and got["data_version"] >= token
    finally:
        srv.kill()


def test_an_account_whose_id_holds_a_slash_is_unlinked_through_gunicorn(
    settings: Settings,
) -> None:
    """gunicorn decodes the path before routing; the id is routed as sent (%2F kept)."""
    key = _linked_user(settings, "u/1", "ACC/2024/1")
    srv = Server(settings.database_url, settings.journal())
    srv.start()
    try:
        h = {"Authorization": f"Bearer {key}"}
        body = {"user_id": "u/1", "action": "view", "contract_id": "C1"}
        check = f"{srv.url}/v1/check"
        assert requests.post(check, json=body, headers=h, timeout=5).json()["allowed"] is True
        user = requests.get(f"{srv.url}/v1/users/u%2F1", headers=h, timeout=5)
        assert [a["account_id"] for a in user.json()["linked_accounts"]] == ["ACC/2024/1"]
        url = f"{srv.url}/v1/users/u%2F1/accounts/ACC%2F2024%2F1"
        assert requests.delete(url, headers=h, timeout=5).status_code == 204
        assert requests.post(check, json=body, headers=h, timeout=5).json()["allowed"] is False
        assert requests.delete(url, headers=h, timeout=5).status_code == 404
    finally:
        srv.kill()
