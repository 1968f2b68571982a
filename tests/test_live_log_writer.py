"""A log writer process beside gunicorn's workers (AUTHZ_LOG_WRITER=process): it stores what
they hand over, with its reasons; it is started again when it ends; a graceful stop leaves
nothing unstored."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from authz import audit
from authz.config import Settings
from authz.db import Database
from authz.runtime import Runtime
from tests.conftest import T0, World, contract
from tests.test_live_service import Server


def _children(pid: int) -> dict[int, str]:
    """The child processes of `pid`, with their command lines."""
    found = {}
    tasks = Path(f"/proc/{pid}/task").iterdir()  # the log writer is a child of another thread
    for child in (c for t in tasks for c in (t / "children").read_text().split()):
        try:
            found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # ended meanwhile
            continue
    return {p: c.decode() for p, c in found.items()}


def _log_writer_of(srv: Server, other_than: int | None = None, seconds: float = 20) -> int:
    assert srv.proc is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid, cmd in _children(srv.proc.pid).items():
            if "service.log_writer" in cmd and pid != other_than:
                return pid
        time.sleep(0.1)
    raise AssertionError("no log writer runs beside the workers")


def _logged(srv: Server, h: dict[str, str], ids: set[str]) -> dict[str, list[str]]:
    """The reasons of those of `ids` the decision log holds, once it holds them all (or 20 s
    have passed)."""
    deadline = time.monotonic() + 20
    while True:
        got = requests.get(f"{srv.url}/v1/decisions?limit=100", headers=h, timeout=5).json()
        found = {d["decision_id"]: d["reasons"] for d in got["decisions"]}
        found = {i: r for i, r in found.items() if i in ids}
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_log_writer_process_stores_the_workers_entries_and_is_started_again_when_it_ends(
    settings: Settings,
) -> None:
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide", "audit"}), T0)
        world = World(rt)
        world.site("default")
        world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer", state="closed")])
        world.user("u1", "default", "A1")
    srv = Server(settings.database_url, settings.journal())
    srv.env["AUTHZ_LOG_WRITER"] = "process"
    srv.start()
    try:
        h = {"Authorization": f"Bearer {key}"}
        deny = {"user_id": "u1", "action": "make_payment", "contract_id": "C2"}

        def decide(n: int) -> set[str]:
            return {
                requests.post(f"{srv.url}/v1/check", json=deny, headers=h, timeout=5).json()[
                    "decision_id"
                ]
                for _ in range(n)
            }

        writer = _log_writer_of(srv)
        first = decide(10)
        # Stored by the writer, reasons and all: the workers journal only.
        assert _logged(srv, h, first) == {i: ["CONTRACT_CLOSED"] for i in first}
        os.kill(writer, signal.SIGKILL)
        later = decide(10)  # journaled meanwhile
        assert _log_writer_of(srv, other_than=writer) != writer
        assert _logged(srv, h, later) == {i: ["CONTRACT_CLOSED"] for i in later}
    finally:
        srv.kill()


def test_a_graceful_stop_stores_every_entry_answered_and_leaves_no_journal(
    settings: Settings,
) -> None:
    with Runtime.open(settings) as rt:
        key = rt.keys.create("live", frozenset({"decide"}), T0)
    srv = Server(settings.database_url, settings.journal())
    srv.env["AUTHZ_LOG_WRITER"] = "process"
    srv.start()
    assert srv.proc is not None
    h = {"Authorization": f"Bearer {key}"}
    body = {"user_id": "nobody", "action": "view", "contract_id": "C1"}
    ids = {
        requests.post(f"{srv.url}/v1/check", json=body, headers=h, timeout=5).json()["decision_id"]
        for _ in range(30)
    }
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=60) == 0
    db = Database.from_url(settings.database_url)  # not a runtime: it would claim the journal
    try:
        stored = {r.decision_id for r in audit.read(db, limit=100)}
    finally:
        db.dispose()
    assert ids <= stored
    journal = settings.journal()
    assert journal is not None
    assert [p.name for p in journal.iterdir()] == []
