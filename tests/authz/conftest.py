"""What the tests of the decision log share."""

from __future__ import annotations

import pytest

from authz.decisions import CheckRequest
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
