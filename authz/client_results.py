"""What `authz.client` hands back: frozen results of 200 answers, and its errors.

Kept apart from the transport so that the shapes a portal service codes against read on
one page; `authz.client` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The answer of `POST /v1/check`; `allowed` is True only when the service sent `true`."""

    allowed: bool
    decision_id: str
    policy_version: str
    data_version: int


@dataclass(frozen=True)
class BatchDecision(Decision):
    correlation_id: str | None


@dataclass(frozen=True)
class Condition:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class Explanation(Decision):
    conditions: tuple[Condition, ...]
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Check:
    """One question of a batch."""

    user_id: str
    action: str
    contract_id: str
    site_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class ListedContract:
    contract_id: str
    state: str
    private_label: str | None
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ContractsPage:
    contracts: tuple[ListedContract, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class EligibleAccount:
    account_id: str
    name: str


@dataclass(frozen=True)
class AccountsPage:
    accounts: tuple[EligibleAccount, ...]
    next_cursor: str | None


# Errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem body as the service sent it; absent members are empty."""

    status: int
    code: str | None
    title: str
    detail: str
    type: str
    errors: tuple[FieldProblem, ...]


class AuthzClientError(Exception):
    """Root of every error of this client; none of them may be read as an allow."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: Problem | None = None,
        request_id: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.request_id = request_id
        self.attempts = attempts

    @property
    def code(self) -> str | None:
        return self.problem.code if self.problem else None

    @property
    def title(self) -> str:
        return self.problem.title if self.problem else ""

    @property
    def detail(self) -> str:
        return self.problem.detail if self.problem else ""

    @property
    def errors(self) -> tuple[FieldProblem, ...]:
        return self.problem.errors if self.problem else ()


class Unavailable(AuthzClientError):
    """No answer in time: 503, connection failure or timeout, after the bounded retries."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class InvalidRequest(AuthzClientError):
    """The service refused the request (a 4xx problem): `code`, `detail` and `errors` say why."""


class AuthenticationFailed(AuthzClientError):
    """The API key is missing, unknown or revoked (401), or lacks the scope (403)."""


class ProtocolError(AuthzClientError):
    """An answer this client cannot trust: unexpected status, not JSON, or the wrong shape."""


class _BadBody(ValueError):
    """A body that does not match the contract; becomes a ProtocolError with the call's ids."""
