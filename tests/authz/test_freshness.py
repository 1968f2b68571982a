"""Consistency tokens: a caller passes the data_version a write answered, and no answer comes
from data older than that (503 `DATA_VERSION_NOT_REACHED` instead)."""

from __future__ import annotations

import pytest

from authz.decisions import CheckRequest
from authz.errors import NotYetCurrent, Unavailable
from authz.runtime import Runtime
from tests.conftest import T0, World, contract


@pytest.fixture
def unlinked(world: World) -> World:
    world.site("default")
    world.sync([contract("C1", "A1:Customer")])
    world.user("u1", "default")
    return world


def test_the_version_a_link_answers_is_enough_for_the_next_decisions(
    rt: Runtime, unlinked: World
) -> None:
    token = rt.directory.link("u1", "A1", T0).data_version
    request = CheckRequest("u1", "view", "C1")
    decision = rt.decider.check(request, min_data_version=token)
    assert decision.allowed and decision.data_version >= token
    assert rt.decider.explain(request, min_data_version=token).decision.allowed
    listed = rt.lister.contracts("u1", min_data_version=token).items
    assert [c.contract_id for c in listed] == ["C1"]
    accounts = rt.lister.eligible_accounts("default", min_data_version=token).items
    assert [a.account_id for a in accounts] == ["A1"]
    after = rt.directory.unlink("u1", "A1")
    assert after > token
    assert not rt.decider.check(request, min_data_version=after).allowed


@pytest.mark.parametrize(
    "ask",
    [
        lambda rt, v: rt.decider.check(CheckRequest("u1", "view", "C1"), min_data_version=v),
        lambda rt, v: rt.decider.check_batch(
            [CheckRequest("u1", "view", "C1")], min_data_version=v
        ),
        lambda rt, v: rt.decider.explain(CheckRequest("u1", "view", "C1"), min_data_version=v),
        lambda rt, v: rt.lister.contracts("u1", min_data_version=v),
        lambda rt, v: rt.lister.contracts("nobody", min_data_version=v),
        lambda rt, v: rt.lister.eligible_accounts("default", min_data_version=v),
    ],
    ids=["check", "batch", "explain", "list", "list of no user", "eligible accounts"],
)
def test_a_version_the_store_has_not_reached_is_refused_not_answered_older(
    rt: Runtime, unlinked: World, ask: object
) -> None:
    held = rt.directory.link("u1", "A1", T0).data_version
    ask(rt, held)  # type: ignore[operator]
    with pytest.raises(NotYetCurrent) as refused:
        ask(rt, held + 1)  # type: ignore[operator]
    assert isinstance(refused.value, Unavailable)
    assert refused.value.code == "DATA_VERSION_NOT_REACHED" and refused.value.held == held
