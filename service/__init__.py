"""The HTTP service: Flask routes over the `authz` library."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from authz.config import Settings
from authz.runtime import Runtime
from service import errors
from service.api import Unauthorized, unauthorized_response
from service.routes import aspire, decisions, directory, lists, ops


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then `config` (tests pass a `RUNTIME`).

    :raises PolicyLoadError: when the policy does not load; the service does not start then.
    """
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=None, JSON_SORT_KEYS=False)
    app.config.update(config or {})
    rt = app.config.get("RUNTIME") or Runtime.open(Settings.from_env())
    app.extensions["authz"] = rt
    errors.register(app)
    app.register_error_handler(Unauthorized, unauthorized_response)
    for area in (ops, decisions, lists, directory, aspire):
        app.register_blueprint(area.bp)
    logging.getLogger(__name__).info(
        "serving policy %s from %s", rt.policy.version[:12], rt.settings.database_url.split("@")[-1]
    )
    return app
