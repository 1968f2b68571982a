"""The decision log and the policy in service (scope `audit`)."""

from __future__ import annotations

from flask import Blueprint, Response

from authz import audit
from authz.enums import Scope
from authz.paging import clamp, decode_cursor, encode_cursor
from service import schemas as s
from service.api import RouteSpec, answer, route, runtime

bp = Blueprint("audit", __name__)


@bp.get("/v1/policy")
@route(
    RouteSpec(
        "The policy in service: its files with their text and its version",
        (Scope.AUDIT,),
        responses={200: s.PolicyOut},
    )
)
def policy() -> Response:
    p = runtime().policy
    files = [s.PolicyFileOut(path=f.path, sha256=f.sha256, source=f.source) for f in p.files]
    return answer(s.PolicyOut(policy_version=p.version, files=files))


@bp.get("/v1/decisions")
@route(
    RouteSpec(
        "The decision log, newest first",
        (Scope.AUDIT,),
        query=s.DecisionsQuery,
        responses={200: s.DecisionsOut},
    )
)
def decisions(query: s.DecisionsQuery) -> Response:
    limit = clamp(query.limit)
    scope = f"decisions|{query.user_id}|{query.contract_id}|{query.since}"
    after = decode_cursor(query.cursor, scope)
    before = int(after) if after is not None and after.isdigit() else None
    rows = audit.read(
        runtime().db, query.user_id, query.contract_id, query.since, limit + 1, before
    )
    page = rows[:limit]
    return answer(
        s.DecisionsOut(
            decisions=[
                s.DecisionOut(
                    decision_id=r.decision_id,
                    at=r.at,
                    caller=r.caller,
                    kind=r.kind,
                    input=r.input,
                    allowed=r.allowed,
                    reasons=r.reasons,
                    policy_version=r.policy_version,
                    data_version=r.data_version,
                )
                for r in page
            ],
            next_cursor=encode_cursor(scope, str(page[-1].seq)) if len(rows) > limit else None,
        )
    )
