"""One error root for the library: each subclass carries a stable code and an HTTP-like status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request: `field` is a path such as `checks[3].action`."""

    field: str
    message: str


class AuthzError(Exception):
    """Root of every error this library raises on purpose."""

    status = 500
    code = "INTERNAL"
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(AuthzError):
    """The request is malformed; nothing was changed."""

    status = 400
    code = "INVALID_REQUEST"
    title = "Invalid request"

    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail)
        self.errors = errors


class NotFound(AuthzError):
    status = 404
    code = "NOT_FOUND"
    title = "Not found"

    def __init__(self, detail: str, code: str = "NOT_FOUND") -> None:
        super().__init__(detail)
        self.code = code


class Refused(AuthzError):
    """A well-formed request that the domain refuses (422)."""

    status = 422
    title = "Refused"

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.code = code


class Unavailable(AuthzError):
    """The store or the policy cannot answer now; callers must treat it as a deny."""

    status = 503
    code = "UNAVAILABLE"
    title = "Service unavailable"


class NotYetCurrent(Unavailable):
    """The caller asked for data at least as new as a version the store has not reached."""

    code = "DATA_VERSION_NOT_REACHED"

    def __init__(self, wanted: int, held: int) -> None:
        super().__init__(
            f"the caller needs data_version {wanted} or later; this service holds {held}. "
            "Retry shortly; an older answer is never given"
        )
        self.wanted = wanted
        self.held = held


def require_version(held: int, wanted: int | None) -> None:
    """:raises NotYetCurrent: when `held` is older than `wanted`."""
    if wanted is not None and held < wanted:
        raise NotYetCurrent(wanted, held)


class PolicyLoadError(AuthzError):
    """The policy files could not be read or compiled; such a policy is never put in service."""

    code = "POLICY_LOAD_FAILED"
    title = "Policy failed to load"
