"""PostgreSQL: processes learn of each change by notification and lease (authz.watch), and a
change answers only once every process has seen it or its lease has run out."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import text

from authz import db as db_module
from authz import watch
from authz.config import Settings
from authz.decisions import CheckRequest
from authz.errors import Unavailable
from authz.runtime import Runtime
from authz.state import read_freshness
from tests.authz.test_factcache import (  # its world: u1 linked to A1, Customer of C1 and C2
    linked,
)
from tests.authz.test_factcache import (
    test_concurrent_checks_never_answer_from_before_a_finished_write as test_concurrent_checks,
)
from tests.conftest import T0, World, contract, emptied

# The property test of test_factcache.py, here with the watch on: four threads checking while
# another process links and unlinks; no answer older than a write already answered.
__all__ = ["linked", "test_concurrent_checks"]

REQUEST = CheckRequest("u1", "view", "C1")


@pytest.fixture
def database_url(pg_schema_url: str) -> str:
    """PostgreSQL only: SQLite reads its version in-process, and runs no watch."""
    return emptied(pg_schema_url)


@pytest.fixture
def other(settings: Settings) -> Iterator[Runtime]:
    """A second process deciding on the same store."""
    runtime = Runtime.open(settings)
    yield runtime
    runtime.close()


def trusted(rt: Runtime, timeout: float = 5.0) -> int:
    """The version `rt`'s watch knows, once it is up."""
    deadline = time.monotonic() + timeout
    while (known := rt.decider.known_version()) is None:
        assert time.monotonic() < deadline, "the watch did not come up"
        time.sleep(0.01)
    return known


def reads_of(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every read of the store's version the decider of `rt` makes from now on."""
    probe = rt.decider._probe
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return type(probe).read(probe)

    monkeypatch.setattr(probe, "read", read)
    return reads


def test_every_process_sees_a_change_before_it_answers_without_reading_the_version(
    rt: Runtime, other: Runtime, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted(other)
    assert other.decider.check(REQUEST).allowed  # its facts remembered
    reads = reads_of(other, monkeypatch)
    version = rt.directory.unlink("u1", "A1")
    # The very next decision, with no pause: the unlink answered only once `other` knew.
    assert other.decider.known_version() == version
    decision = other.decider.check(REQUEST)
    assert not decision.allowed and decision.data_version == version
    assert other.decider.check(REQUEST).data_version == version
    assert reads == []  # decided from what the watch was told, not by reading the version


def test_no_version_read_is_sent_ahead_while_the_watch_is_trusted(
    rt: Runtime, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = rt.decider._probe
    with monkeypatch.context() as m:  # not trusted: decisions read, and a read is sent ahead
        m.setattr(rt.decider._watch, "version", lambda **_: None)
        for _ in range(2):  # facts held, then the probe's connection used
            assert rt.decider.check(REQUEST).allowed
        rt.decider.send_version_read()
        assert getattr(probe._local, "sent", None) is not None
        rt.decider.drop_version_read()
    trusted(rt)
    rt.decider.send_version_read()
    assert getattr(probe._local, "sent", None) is None


def test_a_lease_that_does_not_confirm_holds_a_change_until_it_runs_out(
    rt: Runtime, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lease(row: str) -> None:
        with rt.db.engine.begin() as conn:
            conn.execute(text(f"INSERT INTO worker_leases VALUES {row}"))

    # A lease run out holds nothing: the write answers within a wait no lease could outlast.
    monkeypatch.setattr(db_module, "await_seen", functools.partial(watch.await_seen, limit_s=0.3))
    lease("('ended', -1, now() - interval '1 second')")
    rt.directory.unlink("u1", "A1")  # Unavailable if the run-out lease held it
    # A live one that never confirms holds the answer until it has run out by the store's
    # clock, and no longer: the write answers, not the 503 of the wait's limit (5 s).
    monkeypatch.setattr(db_module, "await_seen", watch.await_seen)
    lease("('silent', -1, now() + interval '1.5 seconds')")
    rt.directory.link("u1", "A1", T0)
    with rt.db.engine.connect() as conn:
        ran_out = conn.execute(
            text("SELECT lease_until <= now() FROM worker_leases WHERE worker_id = 'silent'")
        ).scalar_one()
    assert ran_out


def test_a_change_not_confirmed_in_time_is_refused_but_stays_made(
    rt: Runtime, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with rt.db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO worker_leases VALUES ('stuck', -1, now() + interval '1 hour')")
        )
    monkeypatch.setattr(db_module, "await_seen", functools.partial(watch.await_seen, limit_s=0.3))
    before = trusted(rt)
    with pytest.raises(Unavailable, match="saved"):
        rt.directory.unlink("u1", "A1")
    with rt.db.read() as session:
        assert read_freshness(session).data_version == before + 1
    assert trusted(rt) == before + 1 and not rt.decider.check(REQUEST).allowed


def test_a_process_decides_by_reads_while_its_watch_is_not_trusted(
    rt: Runtime, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted(rt)
    rt.decider.check(REQUEST)
    reads = reads_of(rt, monkeypatch)
    state = rt.decider._watch._state  # type: ignore[union-attr]
    assert state is not None
    # Its lease deadline passed (a renewal that did not come back in time).
    rt.decider._watch._state = (state[0], time.monotonic() - 0.001, state[2])  # type: ignore[union-attr]
    assert rt.decider.known_version() is None
    assert rt.decider.check(REQUEST).allowed
    assert reads == [1]


def test_a_broken_watch_connection_is_seen_and_the_watch_comes_back(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    trusted(other)
    assert other.decider.check(REQUEST).allowed
    conn = other.decider._watch._conn  # type: ignore[union-attr]
    with rt.db.engine.begin() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": conn.info.backend_pid})
    deadline = time.monotonic() + 2
    while other.decider._watch._conn is conn:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the broken connection went unseen"
        time.sleep(0.01)
    # Whether or not it is back yet, a change is seen by the next decision.
    version = rt.directory.unlink("u1", "A1")
    decision = other.decider.check(REQUEST)
    assert not decision.allowed and decision.data_version == version
    assert trusted(other) == version


class Held(threading.Event):
    """The watch's stop flag, made to hold its thread at the next look until `go` is set."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.flag = flag
        self.go = threading.Event()

    def is_set(self) -> bool:
        self.go.wait()
        return self.flag.is_set()

    def set(self) -> None:
        self.go.set()
        self.flag.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.flag.wait(timeout)


def test_a_closed_watch_connection_ends_the_trust_before_the_watch_thread_runs(
    settings: Settings, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease long enough that only the news, not the clock, can end the trust.
    monkeypatch.setattr(watch, "LEASE_S", 60.0)
    runtime = Runtime.open(settings)
    w = runtime.decider._watch
    assert w is not None
    held = Held(w._closed)
    try:
        trusted(runtime)
        w._closed = held  # its thread stops before it next reads from its connection
        time.sleep(watch.RENEW_S * 2)  # past its wait on the socket, now held
        version = runtime.decider.known_version()
        assert version is not None
        with linked.rt.db.engine.begin() as conn:
            # A notification waiting unread leaves the trust as it is.
            conn.execute(watch.notify_sql(version + 1))
        time.sleep(0.2)
        assert runtime.decider.known_version() == version
        with linked.rt.db.engine.begin() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": w._conn.info.backend_pid}
            )
        deadline = time.monotonic() + 2
        while runtime.decider.known_version() is not None:
            assert time.monotonic() < deadline, "the closed connection went unseen"
            time.sleep(0.005)
        state = w._state
        assert state is not None and time.monotonic() < state[1]  # not run out: seen
        assert runtime.decider.check(REQUEST).allowed  # by a read of the version
        held.go.set()
        assert trusted(runtime) == version
    finally:
        held.go.set()  # else a failed assertion above would leave close() waiting forever
        runtime.close()


def test_a_closed_process_gives_up_its_lease(settings: Settings, linked: World) -> None:
    runtime = Runtime.open(settings)
    trusted(runtime)
    worker = runtime.decider._watch.worker_id  # type: ignore[union-attr]
    runtime.close()
    with linked.rt.db.engine.connect() as conn:
        held = conn.execute(
            text("SELECT count(*) FROM worker_leases WHERE worker_id = :w"), {"w": worker}
        ).scalar_one()
    assert held == 0


def test_with_the_watch_off_every_decision_reads_the_version(
    settings: Settings, linked: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime.open(replace(settings, version_watch=False))
    try:
        assert runtime.decider._watch is None and runtime.decider.known_version() is None
        runtime.decider.check(REQUEST)
        reads = reads_of(runtime, monkeypatch)
        runtime.decider.check(REQUEST)
        assert reads == [1]
    finally:
        runtime.close()


def test_a_link_made_at_t0_is_seen_everywhere_at_once(
    rt: Runtime, other: Runtime, world: World
) -> None:
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    world.user("u1", "default")
    trusted(other)
    assert not other.decider.check(REQUEST).allowed
    token = rt.directory.link("u1", "A1", T0).data_version
    decision = other.decider.check(REQUEST, min_data_version=token)
    assert decision.allowed and decision.data_version == token
