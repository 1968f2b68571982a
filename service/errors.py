"""Every error leaves through here as application/problem+json; never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, json
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from authz.errors import AuthzError, FieldError, InvalidInput

log = logging.getLogger("service.errors")
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> Response:
    """Build one problem+json response."""
    body: dict[str, Any] = {
        "type": f"urn:contract-access:problem:{code.lower()}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body), status=status, mimetype=PROBLEM)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors as `{field, message}` with paths like `checks[3].action`."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        # A rule of ours raises ValueError; pydantic prefixes its message with "Value error, ".
        out.append(FieldError(path or "body", err["msg"].removeprefix("Value error, ")))
    return out


def invalid(exc: ValidationError) -> InvalidInput:
    errors = field_errors(exc)
    fields = ", ".join(sorted({e.field for e in errors})[:10])
    return InvalidInput(f"the request is invalid: {fields}", errors)


def register(app: Flask) -> None:
    """Attach the one error mapper to the app."""

    @app.errorhandler(AuthzError)
    def _authz(exc: AuthzError) -> Response:
        if exc.status >= 500:
            log.error("request %s failed: %s", g.get("request_id"), exc.detail, exc_info=exc)
        extra: dict[str, Any] = dict(exc.extra)
        if isinstance(exc, InvalidInput):
            extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
        response = problem(exc.status, exc.title, exc.detail, exc.code, **extra)
        if exc.status == 503:  # the store or a version is expected back shortly
            response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").upper().replace(" ", "_")
        response = problem(status, exc.name, exc.description or exc.name, code)
        if status == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("request %s: unexpected error", g.get("request_id"))
        return problem(
            500, "Internal error", "the service failed to answer; see its log", "INTERNAL"
        )
