"""Liveness, readiness, metrics and the OpenAPI document (no key needed)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from authz.errors import Unavailable
from service import metrics as m
from service import schemas as s
from service.api import RouteSpec, answer, route, runtime
from service.openapi import document

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@route(RouteSpec("The process is alive", None, responses={200: s.HealthOut}))
def healthz() -> Response:
    return answer(s.HealthOut(status="ok"))


@bp.get("/readyz")
@route(
    RouteSpec(
        "The database answers and a policy is loaded", None, responses={200: s.ReadyOut, 503: None}
    )
)
def readyz() -> Response:
    rt = runtime()
    if rt.policy is None or not rt.db.ping():
        raise Unavailable("not ready: the database does not answer or no policy is loaded")
    return answer(s.ReadyOut(status="ready", policy_version=rt.policy.version))


@bp.get("/metrics")
def metrics() -> Response:
    return Response(m.exposition(runtime()), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document(current_app))
