"""What `authz.client` sends (a check's body, the query of a list) and how it follows the
pages of a list to their end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from authz.client_results import Check, ProtocolError

T = TypeVar("T")


def _check_body(c: Check) -> dict[str, str]:
    body = {"user_id": c.user_id, "action": str(c.action), "contract_id": c.contract_id}
    if c.site_id is not None:
        body["site_id"] = c.site_id
    if c.correlation_id is not None:
        body["correlation_id"] = c.correlation_id
    return body


def _pin(body: dict[str, Any], min_data_version: int | None) -> None:
    if min_data_version is not None:
        body["min_data_version"] = min_data_version


def _params(**given: str | int | None) -> dict[str, str]:
    return {k: str(v) for k, v in given.items() if v is not None}


def _pages(fetch: Callable[[str | None], tuple[tuple[T, ...], str | None]]) -> Iterator[T]:
    """Follow `next_cursor` to the end; a cursor seen twice would never end, so it raises.

    :raises ProtocolError: when the service hands back a cursor it gave before.
    """
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        items, cursor = fetch(cursor)
        yield from items
        if cursor is None:
            return
        if cursor in seen:
            raise ProtocolError(f"the service gave the cursor {cursor[:40]!r} twice")
        seen.add(cursor)
