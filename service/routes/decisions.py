"""Decisions: check, batch, explain (scope `decide`)."""

from __future__ import annotations

from flask import Blueprint, Response

from authz.decisions import CheckRequest, Decision
from authz.enums import Scope
from service import metrics
from service import schemas as s
from service.api import RouteSpec, answer, answer_json, caller, route, runtime

bp = Blueprint("decisions", __name__)
DECIDE = (Scope.DECIDE,)


def _request(body: s.CheckIn) -> CheckRequest:
    return CheckRequest(body.user_id, body.action, body.contract_id, body.site_id)


def _fields(d: Decision) -> dict[str, object]:
    return {
        "allowed": d.allowed,
        "decision_id": d.decision_id,
        "policy_version": d.policy_version,
        "data_version": d.data_version,
    }


@bp.post("/v1/check")
@route(
    RouteSpec(
        "May this user do this action on this contract?",
        DECIDE,
        s.CheckIn,
        {200: s.CheckOut},
        decides=True,
    )
)
def check(body: s.CheckIn) -> Response:
    decision = runtime().decider.check(_request(body), caller().name, body.min_data_version)
    metrics.count("check", [decision])
    return answer_json(_fields(decision))  # a CheckOut: every field comes typed from the decider


@bp.post("/v1/check/batch")
@route(
    RouteSpec(
        "Up to 1000 checks in one call, answered in order",
        DECIDE,
        s.CheckBatchIn,
        {200: s.CheckBatchOut},
        max_bytes=2 * 1024 * 1024,
        decides=True,
    )
)
def check_batch(body: s.CheckBatchIn) -> Response:
    requests = [
        CheckRequest(c.user_id, c.action, c.contract_id, c.site_id, c.correlation_id)
        for c in body.checks
    ]
    decisions = runtime().decider.check_batch(
        requests, caller().name, "batch", body.min_data_version
    )
    metrics.count("batch", decisions)
    # A CheckBatchOut, written as plain JSON: every field comes typed from the decider
    # (100 items: 0.11 ms, against 0.18 ms through the models, 0.28 with model_construct).
    results = [{**_fields(d), "correlation_id": d.request.correlation_id} for d in decisions]
    return answer_json({"results": results})


@bp.post("/v1/explain")
@route(
    RouteSpec(
        "The decision with every condition of the policy and the reasons for a deny",
        DECIDE,
        s.CheckIn,
        {200: s.ExplainOut},
    )
)
def explain(body: s.CheckIn) -> Response:
    e = runtime().decider.explain(_request(body), caller().name, body.min_data_version)
    metrics.count("explain", [e.decision])
    return answer(
        s.ExplainOut(
            **_fields(e.decision),
            conditions=[
                s.ConditionOut(name=c.name, passed=c.passed, detail=c.detail) for c in e.conditions
            ],
            reasons=[s.ReasonOut(code=r.code, message=r.message) for r in e.reasons],
        )
    )
