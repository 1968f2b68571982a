"""Structured logs: one JSON object per line (python-json-logger), each with the request id
of the request being served, so a support ticket's X-Request-Id finds every line of it."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from gunicorn.glogging import Logger

access = logging.getLogger("authz.access")


class GunicornLogger(Logger):
    """gunicorn's logger without its text access log, which stays off: `authz.access`
    writes structured lines instead (`log_requests`). Because the logging is configured by
    a dict, gunicorn took its access log for enabled and built every answer's Apache-style
    fields, only for the `gunicorn.access` logger to drop the line: 3.5% of a busy worker's
    samples (py-spy, checks under wrk load)."""

    @property
    def access_log_enabled(self) -> bool:
        return False

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class RequestContext(logging.Filter):
    """Adds `request_id` (None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


def config(level: str = "info", access_log: bool = False) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service and gunicorn: JSON lines on stderr."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["request"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContext}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": ["asctime", "levelname", "name", "process", "message"],
                "rename_fields": {"asctime": "time", "levelname": "level", "process": "pid"},
            }
        },
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # gunicorn's text access log stays off: `authz.access` writes structured lines.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "authz.access": {
                "level": "INFO" if access_log else "WARNING",
                "handlers": [],
                "propagate": True,
            },
        },
    }


def log_requests(app: Flask) -> None:
    """One `authz.access` line per answer (when that logger is on)."""

    @app.after_request
    def _line(response: Response) -> Response:
        if access.isEnabledFor(logging.INFO):
            started = g.get("started")
            caller = g.get("caller")
            access.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "route": request.url_rule.rule if request.url_rule else None,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3)
                    if started is not None
                    else None,
                    "caller": getattr(caller, "name", None),
                    "remote_addr": request.remote_addr,
                },
            )
        return response
