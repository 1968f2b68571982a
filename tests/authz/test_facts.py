"""Facts come in a fixed number of queries, whatever the number of items, accounts or parties."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from authz.decisions import CheckRequest
from authz.runtime import Runtime
from tests.conftest import World, contract


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            seen.append(statement)

    for engine in rt.db.read_engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in rt.db.read_engines:
            event.remove(engine, "before_cursor_execute", record)


def test_a_batch_reads_facts_in_one_statement(world: World, rt: Runtime) -> None:
    world.site("default")
    accounts = [f"A{i}" for i in range(6)]
    world.sync([contract(f"C{i}", *(f"{a}:Customer" for a in accounts)) for i in range(30)])
    for u in range(5):
        world.user(f"u{u}", "default", *accounts)
    requests = [CheckRequest(f"u{u}", "view", f"C{c}") for u in range(5) for c in range(30)]
    with statements(rt) as seen:
        decisions = rt.decider.check_batch(requests)
    assert all(d.allowed for d in decisions)
    assert len(seen) == 1


def test_one_check_reads_facts_in_one_statement(world: World, rt: Runtime) -> None:
    world.site("default")
    world.sync([contract("C1", "A1:Customer", "A2:Guarantor", "A3:Vendor")])
    world.user("u", "default", "A1", "A2")
    with statements(rt) as seen:
        assert rt.decider.check(CheckRequest("u", "view", "C1")).allowed
    assert len(seen) == 1


def test_a_list_reads_in_two_queries_whatever_the_linked_accounts(
    world: World, rt: Runtime
) -> None:
    world.site("default")
    accounts = [f"A{i}" for i in range(5)]
    world.sync(
        [contract(f"C{i}", f"{accounts[i % 5]}:Customer", "A0:Guarantor") for i in range(30)]
    )
    world.user("u", "default", *accounts)
    with statements(rt) as seen:
        page = rt.lister.contracts("u", "view", limit=10)
    assert [c.contract_id for c in page.items] == sorted(f"C{i}" for i in range(30))[:10]
    assert page.items[0].roles == ("Customer", "Guarantor")  # C0: A0 holds both
    assert len(seen) == 2
