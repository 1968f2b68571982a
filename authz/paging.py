"""Keyset paging shared by the lists and the decision log: limits and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Generic, TypeVar

from authz.errors import FieldError, InvalidInput

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def clamp(limit: int) -> int:
    """:raises InvalidInput: for a limit under 1; above the maximum it is clamped."""
    if limit < 1:
        raise InvalidInput("invalid limit", [FieldError("limit", "must be at least 1")])
    return min(limit, MAX_LIMIT)


def encode_cursor(scope: str, after: str) -> str:
    """An opaque cursor: the last key of the page, bound to the query it came from."""
    body = {"a": after, "q": hashlib.sha256(scope.encode()).hexdigest()[:16]}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, scope: str) -> str | None:
    """:raises InvalidInput: when the cursor is malformed or belongs to another query."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
        after = body["a"]
        same = body["q"] == hashlib.sha256(scope.encode()).hexdigest()[:16]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidInput(
            "invalid cursor", [FieldError("cursor", "not a cursor this service made")]
        ) from None
    if not isinstance(after, str) or not same:
        raise InvalidInput(
            "invalid cursor", [FieldError("cursor", "this cursor belongs to another query")]
        )
    return after
