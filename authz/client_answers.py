"""Reading the service's answers for `authz.client`: a 200 whose body validates becomes a
result (through `authz.client_bodies`), any other answer the typed error it stands for; and
the Retry-After an answer carries."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests

from authz.client_results import (
    AuthenticationFailed,
    FieldProblem,
    InvalidRequest,
    Problem,
    ProtocolError,
    _BadBody,
)

T = TypeVar("T")
JSON = "application/json"


def _answer(
    response: requests.Response, read: Callable[[Any], T], what: str, ids: dict[str, Any]
) -> T:
    """The result of a 200 whose body validates, else the typed error for what came back."""
    status = response.status_code
    if status == 200:
        if _media_type(response) != JSON:
            raise ProtocolError(f"{what}: 200 with Content-Type {_media_type(response)!r}", **ids)
        try:
            return read(_loads(response.content))
        except _BadBody as e:
            raise ProtocolError(f"{what}: 200 with a body that does not match: {e}", **ids) from e
    problem = _problem(response)
    if status in (401, 403):
        raise AuthenticationFailed(f"{what}: {status}", status=status, problem=problem, **ids)
    if 400 <= status < 500 and problem is not None:
        text = f"{what}: {status} {problem.code}: {problem.detail}"
        raise InvalidRequest(text, status=status, problem=problem, **ids)
    raise ProtocolError(
        f"{what}: unexpected status {status}", status=status, problem=problem, **ids
    )


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _loads(raw: bytes) -> Any:
    """JSON that means one thing only: no repeated key, no NaN or Infinity."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            raise _BadBody("an object repeats a key")
        return out

    def constant(name: str) -> Any:
        raise _BadBody(f"{name} is not JSON")

    try:
        return json.loads(raw, object_pairs_hook=pairs, parse_constant=constant)
    except _BadBody:
        raise
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise _BadBody(f"not JSON: {e}") from None


def _problem(response: requests.Response) -> Problem | None:
    """The problem body of an error answer, or None when there is none to read."""
    if _media_type(response) not in ("application/problem+json", JSON):
        return None
    try:
        body = _loads(response.content)
    except _BadBody:
        return None
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    return Problem(
        status=response.status_code,
        code=body["code"] if isinstance(body.get("code"), str) else None,
        title=str(body.get("title") or ""),
        detail=str(body.get("detail") or ""),
        type=str(body.get("type") or "about:blank"),
        errors=tuple(
            FieldProblem(str(e.get("field", "")), str(e.get("message", "")))
            for e in (errors if isinstance(errors, list) else [])
            if isinstance(e, dict)
        ),
    )


def _retry_after(response: requests.Response) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if it has one."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
