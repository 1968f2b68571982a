"""A client for the portal's services: decisions and lists over HTTP, failing closed.

Every call ends in one of two ways: a frozen result built from a 200 answer whose body
validated (`allowed` must be a JSON boolean), or an `AuthzClientError`. Nothing here turns a
failure into an allow, and nothing returns a default on error: a caller that catches
`AuthzClientError` decides, in its own code, to deny.

Retries are a small loop, not urllib3's `Retry`, because:

- one deadline covers the whole call; urllib3 times each attempt on its own and sleeps a
  Retry-After in full, so its retries can run past any deadline;
- a Retry-After longer than the time left ends the call at once instead of sleeping for an
  answer that would come too late;
- the error says how many attempts were made and why the last failed, which urllib3 folds
  into requests' `RetryError` or `ConnectionError`.

The adapter is mounted with `max_retries=0`, so urllib3 retries nothing underneath the loop.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from authz.client_answers import JSON, _answer, _problem, _retry_after
from authz.client_bodies import (
    _list,
    _obj,
    _read_accounts_page,
    _read_batch_item,
    _read_contracts_page,
    _read_decision,
    _read_explanation,
)
from authz.client_requests import _check_body, _pages, _params, _pin
from authz.client_results import (
    AccountsPage,
    AuthenticationFailed,
    AuthzClientError,
    BatchDecision,
    Check,
    Condition,
    ContractsPage,
    Decision,
    EligibleAccount,
    Explanation,
    FieldProblem,
    InvalidRequest,
    ListedContract,
    Problem,
    ProtocolError,
    Reason,
    Unavailable,
    _BadBody,
)

T = TypeVar("T")

__all__ = [
    "AccountsPage",
    "AuthenticationFailed",
    "AuthzClient",
    "AuthzClientError",
    "BatchDecision",
    "Check",
    "Condition",
    "ContractsPage",
    "Decision",
    "EligibleAccount",
    "Explanation",
    "FieldProblem",
    "InvalidRequest",
    "ListedContract",
    "Problem",
    "ProtocolError",
    "Reason",
    "Unavailable",
]

# The client --------------------------------------------------------------------------------

RETRIED_STATUS = 503
# A connection refused, reset or broken mid-answer, and a connect or read timeout.
RETRIED_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class AuthzClient:
    """A pooled, authenticated session to one contract access service."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 0.5,
        read_timeout: float = 2.0,
        deadline: float = 3.0,
        max_retries: int = 2,
        backoff: float = 0.05,
        pool_size: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`sleep` waits between attempts (tests pass one that records the waits).

        :raises ValueError: for a timeout or deadline that is not positive, or bad counts.
        """
        if min(connect_timeout, read_timeout, deadline) <= 0 or backoff < 0:
            raise ValueError("timeouts and the deadline must be positive")
        if not 0 <= max_retries <= 5 or pool_size < 1:
            raise ValueError("max_retries must be 0 to 5 and pool_size at least 1")
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": f"{JSON}, application/problem+json",
                "User-Agent": "contract-access-client/1",
            }
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> AuthzClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Decisions -----------------------------------------------------------------------------

    def check(
        self,
        user_id: str,
        action: str,
        contract_id: str,
        site_id: str | None = None,
        *,
        min_data_version: int | None = None,
    ) -> Decision:
        """May this user do this action on this contract?

        `min_data_version`: the `data_version` a write answered; the decision is made on
        data at least that new (else `Unavailable`, code `DATA_VERSION_NOT_REACHED`).

        :raises AuthzClientError: on any outcome but a valid 200 answer.
        """
        body: dict[str, Any] = _check_body(Check(user_id, action, contract_id, site_id))
        _pin(body, min_data_version)
        return self._call("POST", "/v1/check", _read_decision, body=body)

    def is_allowed(
        self,
        user_id: str,
        action: str,
        contract_id: str,
        site_id: str | None = None,
        *,
        min_data_version: int | None = None,
    ) -> bool:
        """True only when the service answered an allow; False when it answered a deny.

        There is no third outcome: any failure raises, so a caller cannot mistake it for
        either answer. Do not catch `AuthzClientError` to return True.

        :raises AuthzClientError: on any outcome but a valid 200 answer.
        """
        decision = self.check(
            user_id, action, contract_id, site_id, min_data_version=min_data_version
        )
        return decision.allowed is True

    def check_batch(
        self, checks: Sequence[Check], *, min_data_version: int | None = None
    ) -> tuple[BatchDecision, ...]:
        """Up to 1000 checks in one call, answered in the order sent.

        :raises ProtocolError: when the answer does not match the checks one to one.
        :raises AuthzClientError: on any other outcome but a valid 200 answer.
        """
        body: dict[str, Any] = {"checks": [_check_body(c) for c in checks]}
        _pin(body, min_data_version)

        def read(raw: Any) -> tuple[BatchDecision, ...]:
            results = _list(_obj(raw, "body"), "results", "body")
            if len(results) != len(checks):
                raise _BadBody(f"{len(results)} results for {len(checks)} checks")
            out = tuple(_read_batch_item(r, f"results[{i}]") for i, r in enumerate(results))
            for i, (sent, got) in enumerate(zip(checks, out, strict=True)):
                if sent.correlation_id != got.correlation_id:
                    raise _BadBody(f"results[{i}].correlation_id is not the one sent")
            return out

        return self._call("POST", "/v1/check/batch", read, body=body)

    def explain(
        self,
        user_id: str,
        action: str,
        contract_id: str,
        site_id: str | None = None,
        *,
        min_data_version: int | None = None,
    ) -> Explanation:
        """The decision with every condition the policy weighed and the reasons for a deny.

        :raises AuthzClientError: on any outcome but a valid 200 answer.
        """
        body: dict[str, Any] = _check_body(Check(user_id, action, contract_id, site_id))
        _pin(body, min_data_version)
        return self._call("POST", "/v1/explain", _read_explanation, body=body)

    # Lists ---------------------------------------------------------------------------------

    def list_user_contracts(
        self,
        user_id: str,
        *,
        action: str = "view",
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_data_version: int | None = None,
    ) -> ContractsPage:
        """One page of the contracts the user may do `action` on.

        :raises AuthzClientError: on any outcome but a valid 200 answer.
        """
        params = _params(
            action=action,
            state=state,
            limit=limit,
            cursor=cursor,
            min_data_version=min_data_version,
        )
        path = f"/v1/users/{quote(user_id, safe='')}/contracts"
        return self._call("GET", path, _read_contracts_page, params=params)

    def iter_user_contracts(
        self,
        user_id: str,
        *,
        action: str = "view",
        state: str | None = None,
        page_size: int | None = None,
        min_data_version: int | None = None,
    ) -> Iterator[ListedContract]:
        """Every such contract, page after page.

        :raises AuthzClientError: from the page that failed; earlier items were yielded.
        """

        def fetch(cursor: str | None) -> tuple[tuple[ListedContract, ...], str | None]:
            page = self.list_user_contracts(
                user_id,
                action=action,
                state=state,
                limit=page_size,
                cursor=cursor,
                min_data_version=min_data_version,
            )
            return page.contracts, page.next_cursor

        return _pages(fetch)

    def list_eligible_accounts(
        self,
        site_id: str,
        *,
        q: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_data_version: int | None = None,
    ) -> AccountsPage:
        """One page of the ASPIRE accounts that may be linked to a user of the site.

        :raises InvalidRequest: 404 `SITE_NOT_FOUND` for an unknown site.
        :raises AuthzClientError: on any other outcome but a valid 200 answer.
        """
        params = _params(q=q, limit=limit, cursor=cursor, min_data_version=min_data_version)
        path = f"/v1/sites/{quote(site_id, safe='')}/eligible-accounts"
        return self._call("GET", path, _read_accounts_page, params=params)

    def iter_eligible_accounts(
        self,
        site_id: str,
        *,
        q: str | None = None,
        page_size: int | None = None,
        min_data_version: int | None = None,
    ) -> Iterator[EligibleAccount]:
        """Every such account, page after page.

        :raises AuthzClientError: from the page that failed; earlier items were yielded.
        """

        def fetch(cursor: str | None) -> tuple[tuple[EligibleAccount, ...], str | None]:
            page = self.list_eligible_accounts(
                site_id, q=q, limit=page_size, cursor=cursor, min_data_version=min_data_version
            )
            return page.accounts, page.next_cursor

        return _pages(fetch)

    # The one way out to the network --------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        read: Callable[[Any], T],
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> T:
        """Send one call, retried on connection errors, timeouts and 503, within the deadline.

        Every call this client makes is a read: the decision POSTs change no data, they only
        log what was decided, so sending one again after a timeout or a broken connection is
        safe (the decision log may then hold the same question twice). Each attempt's
        connect and read timeouts are clipped to the time left, so a call overruns its
        deadline by at most the connect time of its last attempt.
        """
        request_id = uuid.uuid4().hex  # one per call, on every attempt: the service logs it
        ends = time.monotonic() + self.deadline
        attempts = 0
        while True:
            attempts += 1
            left = max(ends - time.monotonic(), 0.001)
            ids: dict[str, Any] = {"request_id": request_id, "attempts": attempts}
            wait = 0.0
            try:
                response = self._session.request(
                    method,
                    self.base_url + path,
                    json=body,
                    params=params,
                    headers={"X-Request-Id": request_id},
                    timeout=(min(self.connect_timeout, left), min(self.read_timeout, left)),
                    allow_redirects=False,
                )
            except RETRIED_ERRORS as e:
                failure = Unavailable(f"{method} {path}: {e.__class__.__name__}: {e}", **ids)
                failure.__cause__ = e
            except requests.RequestException as e:
                raise ProtocolError(f"{method} {path}: {e.__class__.__name__}: {e}", **ids) from e
            else:
                if response.status_code != RETRIED_STATUS:
                    return _answer(response, read, f"{method} {path}", ids)
                hint = _retry_after(response)
                problem = _problem(response)
                failure = Unavailable(
                    f"{method} {path}: 503 {problem.detail if problem else ''}".rstrip(),
                    retry_after=hint,
                    status=RETRIED_STATUS,
                    problem=problem,
                    **ids,
                )
                wait = hint or 0.0
            wait = max(wait, self._backoff(attempts))
            if attempts > self.max_retries or time.monotonic() + wait >= ends:
                raise failure
            self._sleep(wait)

    def _backoff(self, attempts: int) -> float:
        """Exponential from `backoff`, with jitter so that many clients do not retry at once."""
        return self.backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.0)


# Reading answers ---------------------------------------------------------------------------
