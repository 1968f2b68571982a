"""What the tests of the decision log share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from authz.config import Settings
from authz.decisions import CheckRequest
from authz.handover import HandOverLog
from authz.runtime import Runtime
from tests.conftest import World, contract


@pytest.fixture
def logged(world: World, rt: Runtime) -> Runtime:
    world.site("default")
    world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer", state="closed")])
    world.user("u1", "default", "A1")
    rt.decider.check(CheckRequest("u1", "view", "C1"), caller="portal-web")
    rt.decider.check_batch(
        [
            CheckRequest("u1", "make_payment", "C2", correlation_id="row-7"),
            CheckRequest("ghost", "view", "C1"),
        ],
        caller="payments",
    )
    rt.decider.explain(CheckRequest("u1", "make_payment", "C2", site_id="default"), "support")
    rt.log.flush()
    return rt


@pytest.fixture
def worker(settings: Settings) -> Iterator[Runtime]:
    """A runtime as a gunicorn worker runs it, with a long hand-over interval: the tests
    hand over with `flush`."""
    rt = Runtime.open(replace(settings, log_handover=True))
    assert isinstance(rt.log, HandOverLog)
    rt.log.interval = 3600
    rt.log._wake.set()  # the thread takes the new interval
    World(rt).site("default")
    World(rt).sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer", state="closed")])
    World(rt).user("u1", "default", "A1")
    yield rt
    rt.close()
