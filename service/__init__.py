"""The HTTP service: Flask routes over the `authz` library."""

from __future__ import annotations

import atexit
import logging
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

from authz.config import Settings
from authz.errors import PolicyLoadError
from authz.runtime import Runtime
from service import errors, logs, metrics
from service.api import Unauthorized, unauthorized_response
from service.paths import keep_escaped_slashes
from service.routes import aspire, audit, decisions, directory, lists, ops


def _request_ids(app: Flask) -> None:
    """Take the caller's X-Request-Id (or make one), log with it, and echo it back; time
    every answer by route."""

    @app.before_request
    def _take() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-Id", "")
        ok = 0 < len(given) <= 128 and given.isprintable() and given.isascii()
        g.request_id = given if ok else uuid.uuid4().hex

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id") or uuid.uuid4().hex
        started = g.get("started")
        if started is not None:
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.observe_latency(route, time.perf_counter() - started)
        return response


def _settings() -> Settings:
    """The environment's settings; under gunicorn, the policy is the copy that passed its
    fixtures (see `authz.assurance.freeze`), not the files an operator may be editing."""
    settings = Settings.from_env()
    serving = os.environ.get("AUTHZ_SERVING_POLICY_DIR")
    return replace(settings, policy_dir=Path(serving)) if serving else settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then `config` (tests pass a `RUNTIME`).

    :raises PolicyLoadError: when the policy does not load; the service does not start then.
    """
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=None, JSON_SORT_KEYS=False)
    app.wsgi_app = keep_escaped_slashes(app.wsgi_app)  # type: ignore[method-assign]
    app.config.update(config or {})
    rt = app.config.get("RUNTIME")
    if rt is None:
        rt = Runtime.open(_settings())
        atexit.register(rt.close)  # gunicorn's worker_exit closes it first on a graceful stop
    assured = os.environ.get("AUTHZ_ASSURED_POLICY_VERSION")
    if assured and assured != rt.policy.version:
        raise PolicyLoadError(
            f"the policy loaded is not the one that passed its fixtures ({assured[:12]} "
            f"checked, {rt.policy.version[:12]} loaded)"
        )
    app.extensions["authz"] = rt
    rt.log.observer = metrics.LogMetrics()
    # A version read sent ahead for a request that ended before deciding (a refusal, an
    # error) must not answer the next request: it is as old as this one.
    app.teardown_request(lambda _exc: rt.decider.drop_version_read())
    _request_ids(app)
    logs.log_requests(app)
    errors.register(app)
    app.register_error_handler(Unauthorized, unauthorized_response)
    for area in (ops, decisions, lists, directory, aspire, audit):
        app.register_blueprint(area.bp)
    logging.getLogger(__name__).info(
        "serving policy %s from %s", rt.policy.version[:12], rt.settings.database_url.split("@")[-1]
    )
    return app
