"""Facts remembered per data version: a warm decision reads the store's version and nothing
else, and no decision is answered from facts of any version but the store's."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event, text

from authz.config import Settings
from authz.decisions import CheckRequest
from authz.runtime import Runtime
from tests.conftest import T0, World, contract

VIEW_C1 = CheckRequest("u1", "view", "C1")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every decision reads the store's version: on PostgreSQL the watch is off here (it is
    tested in test_watch.py, the concurrent test below with it on)."""
    return replace(settings, version_watch=False)


@pytest.fixture
def linked(world: World) -> World:
    world.site("default")
    world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer")])
    world.user("u1", "default", "A1")
    return world


@pytest.fixture
def other(rt: Runtime) -> Iterator[Runtime]:
    """A second runtime on the same store: another worker, or another host."""
    runtime = Runtime.open(rt.settings)
    yield runtime
    runtime.close()


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    """The statements the decider's pooled reads send while the block runs."""
    sent: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    engines = rt.db.read_engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)


def probes(rt: Runtime) -> list[int]:
    """Record each version the decider's probe reads."""
    read: list[int] = []
    probe = rt.decider._probe
    original = probe.read

    def counted() -> int:
        read.append(original())
        return read[-1]

    probe.read = counted  # type: ignore[method-assign]
    return read


def test_a_warm_check_reads_only_the_data_version(rt: Runtime, linked: World) -> None:
    """On PostgreSQL (the watch off here) each one does. On SQLite only until the probe has
    stamped the store's WAL index on a connection that had read before: the first read on
    a new connection, then the second, then none while nothing is committed."""
    assert rt.decider.check(VIEW_C1).allowed
    read = probes(rt)
    with statements(rt) as sent:
        decisions = [rt.decider.check(VIEW_C1) for _ in range(5)]
    assert all(d.allowed for d in decisions) and sent == []
    assert read == [decisions[0].data_version] * (2 if rt.db.is_sqlite else 5)


def test_a_change_made_after_the_probe_stamped_the_store_is_seen_by_the_next_check(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    """Warm enough that SQLite's checks read nothing (see above): another process's commit
    changes the WAL index, so the next check reads the version again."""
    read = probes(rt)
    for _ in range(4):
        assert rt.decider.check(VIEW_C1).allowed
    assert len(read) == (2 if rt.db.is_sqlite else 3)
    version = other.directory.unlink("u1", "A1")
    after = rt.decider.check(VIEW_C1)
    assert not after.allowed and after.data_version == version
    assert read[-1] == version


def test_a_commit_that_changes_no_decision_costs_one_version_read(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    """Another worker's decision log write is a commit too: the next check reads the
    version, finds it unchanged, and answers from the facts it holds."""
    read = probes(rt)
    for _ in range(4):
        assert rt.decider.check(VIEW_C1).allowed
    before = len(read)
    other.decider.check(VIEW_C1)
    other.log.flush()
    with statements(rt) as sent:
        assert rt.decider.check(VIEW_C1).allowed
        assert rt.decider.check(VIEW_C1).allowed
    assert sent == []
    assert len(read) == before + (1 if rt.db.is_sqlite else 2)


def test_a_first_check_reads_its_facts_and_sends_no_probe(rt: Runtime, linked: World) -> None:
    read = probes(rt)
    with statements(rt) as sent:
        assert rt.decider.check(VIEW_C1).allowed
    assert len(sent) == 1 and read == []


def test_a_change_made_by_another_process_is_seen_by_the_next_check(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    assert rt.decider.check(VIEW_C1).allowed
    assert rt.decider.check(VIEW_C1).allowed  # now answered from remembered facts
    version = other.directory.unlink("u1", "A1")
    after = rt.decider.check(VIEW_C1)
    assert not after.allowed and after.data_version == version
    other.directory.link("u1", "A1", T0)
    assert rt.decider.check(VIEW_C1).allowed


def test_a_batch_mixing_remembered_and_new_facts_is_all_of_the_newest_version(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    assert rt.decider.check(VIEW_C1).allowed
    version = other.directory.unlink("u1", "A1")
    # C1's facts are remembered from before the unlink; C2's must be read, at the new
    # version, and then C1's remembered ones are stale: both are read again.
    decisions = rt.decider.check_batch([VIEW_C1, CheckRequest("u1", "view", "C2")])
    assert [d.allowed for d in decisions] == [False, False]
    assert {d.data_version for d in decisions} == {version}


def test_each_site_has_facts_of_its_own(rt: Runtime, linked: World) -> None:
    linked.site("other")
    assert rt.decider.check(VIEW_C1).allowed
    assert rt.decider.check(CheckRequest("u1", "view", "C1", site_id="default")).allowed
    assert not rt.decider.check(CheckRequest("u1", "view", "C1", site_id="other")).allowed
    assert rt.decider.check(CheckRequest("u1", "view", "C1", site_id="default")).allowed


def test_a_store_put_back_to_an_older_version_is_not_answered_from_newer_facts(
    rt: Runtime, linked: World
) -> None:
    """A restored backup: the version goes back, then counts up to the same number."""
    held = rt.decider.check(VIEW_C1)
    assert held.allowed
    with rt.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM user_accounts"))
        conn.execute(text("UPDATE service_state SET data_version = data_version - 1"))
    assert not rt.decider.check(VIEW_C1).allowed
    with rt.db.engine.begin() as conn:
        conn.execute(text("UPDATE service_state SET data_version = data_version + 1"))
    after = rt.decider.check(VIEW_C1)
    assert after.data_version == held.data_version and not after.allowed


def test_concurrent_checks_never_answer_from_before_a_finished_write(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    """A writer links and unlinks in turn and publishes each version once its write has
    answered; checkers on four threads, each answer must be of that version or newer, and
    allowed exactly when the link was there at the version it names."""
    linked_at: dict[int, bool] = {rt.decider.check(VIEW_C1).data_version: True}
    published = [max(linked_at)]
    stop = threading.Event()
    failures: list[str] = []

    def write() -> None:
        for i in range(30):
            if i % 2 == 0:
                version, state = other.directory.unlink("u1", "A1"), False
            else:
                version, state = other.directory.link("u1", "A1", T0).data_version, True
            linked_at[version] = state
            published.append(version)

    def check() -> None:
        while not stop.is_set():
            floor = published[-1]
            try:
                d = rt.decider.check(VIEW_C1)
            except Exception as exc:
                failures.append(repr(exc))
                return
            if d.data_version < floor:
                failures.append(f"answered at {d.data_version} after {floor} was written")
            elif d.data_version in linked_at and d.allowed != linked_at[d.data_version]:
                failures.append(f"allowed={d.allowed} at {d.data_version}")

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        write()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert len(published) == 31


def test_a_pair_not_remembered_is_read_once_after_a_change(
    rt: Runtime, other: Runtime, linked: World
) -> None:
    """Facts remembered of other pairs at an older version cost the new pair nothing."""
    assert rt.decider.check(VIEW_C1).allowed
    other.directory.unlink("u1", "A1")
    with statements(rt) as sent:
        assert not rt.decider.check(CheckRequest("u1", "view", "C2")).allowed
    assert len(sent) == 1


def test_a_forked_child_closing_the_probe_leaves_the_parents_connection_alone(
    rt: Runtime, linked: World
) -> None:
    import os

    probe = rt.decider._probe
    version = probe.read()
    pid = os.fork()
    if pid == 0:  # the child: what a worker's exit would do with an inherited runtime
        try:
            probe.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert probe.read() == version
    held = probe._local.held
    assert held is not None and held[0] == os.getpid()


def kill_probe_connection(rt: Runtime) -> None:
    """End the probe's connection from outside: on PostgreSQL the server ends its session
    (waiting up to 5 s for it to end); on SQLite the handle is closed."""
    conn = rt.decider._probe._local.held[1]
    if rt.db.engine.dialect.name == "postgresql":
        with rt.db.engine.connect() as c:
            pid = conn.info.backend_pid
            c.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    else:
        conn.close()


def test_a_probe_connection_lost_is_a_refusal_then_a_new_connection(
    rt: Runtime, linked: World
) -> None:
    """A warm check whose probe cannot read answers nothing; the next one connects again."""
    from authz.errors import Unavailable

    assert rt.decider.check(VIEW_C1).allowed
    assert rt.decider.check(VIEW_C1).allowed  # warm: the probe's connection is open
    kill_probe_connection(rt)
    with pytest.raises(Unavailable):
        rt.decider.check(VIEW_C1)
    assert rt.decider._probe._local.held is None
    assert rt.decider.check(VIEW_C1).allowed
    assert rt.decider._probe._local.held is not None


def test_a_state_row_missing_is_a_refusal_not_a_version(rt: Runtime, linked: World) -> None:
    from authz.errors import Unavailable

    assert rt.decider.check(VIEW_C1).allowed
    with rt.db.engine.begin() as c:
        c.execute(text("DELETE FROM service_state WHERE id = 1"))
    with pytest.raises(Unavailable):
        rt.decider._probe.read()


def test_a_version_read_sent_ahead_is_as_new_as_its_sending(
    rt: Runtime, linked: World, other: Runtime
) -> None:
    """`send_version_read` (PostgreSQL) sends the warm check's probe early; the check takes
    its answer, the store's version when it was sent, never older. A change made after
    the sending is seen by the check after that one."""
    for _ in range(2):  # facts held, the probe's connection in use
        assert rt.decider.check(VIEW_C1).allowed
    rt.decider.send_version_read()
    version = other.directory.unlink("u1", "A1")
    first = rt.decider.check(VIEW_C1)
    if rt.db.engine.dialect.name == "postgresql":  # answered as of the sending
        assert first.allowed and first.data_version == version - 1
    else:  # SQLite sends nothing ahead: read when deciding
        assert not first.allowed and first.data_version == version
    after = rt.decider.check(VIEW_C1)
    assert not after.allowed and after.data_version == version


def test_a_version_read_no_decision_took_is_dropped_not_answered_later(
    rt: Runtime, linked: World, other: Runtime
) -> None:
    """A request refused after the read was sent (its answer never taken) leaves nothing
    for the next request of the thread: that one sees every change made before it."""
    for _ in range(2):
        assert rt.decider.check(VIEW_C1).allowed
    rt.decider.send_version_read()
    rt.decider.send_version_read()  # sent twice: the first answer is dropped
    rt.decider.drop_version_read()
    version = other.directory.unlink("u1", "A1")
    after = rt.decider.check(VIEW_C1)
    assert not after.allowed and after.data_version == version
    rt.decider.drop_version_read()  # nothing sent: nothing to do
    assert rt.decider._probe.read() == version


def test_a_version_read_sent_ahead_waits_without_the_gil(rt: Runtime, linked: World) -> None:
    """Its answer is waited for in poll(), not in psycopg's get_result, which holds the GIL
    while it blocks: another thread (the decision log's writer) runs meanwhile."""
    if rt.db.engine.dialect.name != "postgresql":
        assert rt.decider._probe.send() is None and not hasattr(rt.decider._probe._local, "sent")
        return
    probe = rt.decider._probe
    version = probe.read()
    conn = probe._local.held[1]
    slow = b"SELECT data_version FROM service_state, pg_sleep(0.3) WHERE id = 1"
    conn.pgconn.send_query_params(slow, None, result_format=1)  # sent ahead, answered late
    probe._local.sent = (os.getpid(), conn)
    spins = [0]
    done = threading.Event()

    def spin() -> None:
        while not done.is_set():
            spins[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        assert probe.read() == version
    finally:
        done.set()
        spinner.join()
    # Seen here: about 30,000 turns in 0.3 s beside a wait holding the GIL, 2 million beside
    # one that lets it go.
    assert spins[0] > 200_000
