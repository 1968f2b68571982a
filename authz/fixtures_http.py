"""The fixture target for a live service: builds the suite's world over the HTTP API.

Every id of the world is prefixed with a run-unique tag, so suites can run against a
shared staging service without meeting its other data (the world stays there afterwards).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from authz.fixture_suite import AccountFx, ContractFx, PartyFx, WorldFx
from authz.fixtures import (
    Answer,
    Decide,
    ListContracts,
    ListEligible,
    Question,
    batch_payload,
    drain_pages,
)


class ServiceError(RuntimeError):
    """The live service answered something a fixture run cannot use."""


class HttpChecker:
    def __init__(self, target: HttpTarget, prefix: str) -> None:
        self.t = target
        self.p = prefix

    def ask(self, question: Question) -> Answer:
        p = self.p
        if isinstance(question, Decide):
            body: dict[str, Any] = {
                "user_id": p + question.user,
                "action": question.action,
                "contract_id": p + question.contract,
            }
            if question.site is not None:
                body["site_id"] = p + question.site
            got = self.t.call("POST", "/v1/explain", body, expect=(200,))
            return Answer(
                bool(got["allowed"]),
                tuple(r["code"] for r in got["reasons"]),
                conditions=tuple((c["name"], bool(c["passed"])) for c in got["conditions"]),
            )
        if isinstance(question, ListContracts):
            path = f"/v1/users/{p}{question.user}/contracts"
            params = {"action": question.action}
            return Answer(items=self._drain(path, params, "contracts", "contract_id"))
        if isinstance(question, ListEligible):
            path = f"/v1/sites/{p}{question.site}/eligible-accounts"
            return Answer(items=self._drain(path, {}, "accounts", "account_id"))
        path = f"/v1/users/{p}{question.user}/accounts"
        response = self.t.raw("POST", path, {"account_id": p + question.account})
        if response.status_code in (200, 201):
            if response.status_code == 201:  # leave the world as the suite built it
                self.t.call("DELETE", f"{path}/{p}{question.account}", None, expect=(204,))
            return Answer(True)
        if response.status_code == 422:
            return Answer(False, tuple(r["code"] for r in response.json().get("reasons", [])))
        raise ServiceError(f"POST {path}: {response.status_code} {response.text[:300]}")

    def _drain(self, path: str, params: dict[str, str], key: str, field: str) -> tuple[str, ...]:
        """Every page, with the run's prefix taken off; rows of other data are left out."""

        def fetch(cursor: str | None) -> tuple[list[str], str | None]:
            query = {**params, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            got = self.t.call("GET", path, None, expect=(200,), params=query)
            ids = [x[field] for x in got[key]]
            return [i[len(self.p) :] for i in ids if i.startswith(self.p)], got["next_cursor"]

        return drain_pages(fetch)


class HttpTarget:
    """A live service reached at `url` with an API key holding decide, manage and sync."""

    def __init__(self, url: str, key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout

    def raw(
        self, method: str, path: str, body: Any, params: dict[str, str] | None = None
    ) -> requests.Response:
        return self.session.request(
            method, self.url + path, json=body, params=params, timeout=self.timeout
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any,
        expect: tuple[int, ...],
        params: dict[str, str] | None = None,
    ) -> Any:
        """:raises ServiceError: on any other status than `expect`."""
        response = self.raw(method, path, body, params)
        if response.status_code not in expect:
            raise ServiceError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def actions(self) -> tuple[str, ...]:
        """The actions the service's policy declares, from its OpenAPI document."""
        doc = self.call("GET", "/openapi.json", None, expect=(200,))
        return tuple(doc["components"]["schemas"]["CheckIn"]["properties"]["action"]["enum"])

    @contextmanager
    def world(self, world: WorldFx) -> Iterator[HttpChecker]:
        p = f"fx{secrets.token_hex(4)}-"
        source = self.call("GET", "/v1/aspire/status", None, expect=(200,))["source"]
        for s in world.sites:
            self.call(
                "PUT",
                f"/v1/sites/{p}{s.site_id}",
                {
                    "name": s.name or s.site_id,
                    "private_label": s.private_label,
                    "payments_enabled": s.payments_enabled,
                },
                expect=(200, 201),
            )
        now = datetime.now(UTC)
        accounts = [AccountFx(account_id=p + a.account_id, name=a.name) for a in world.accounts]
        self._sync(source, f"{p}#1", now - timedelta(seconds=2), accounts, world.contracts, p)
        for u in world.users:
            self.call(
                "PUT",
                f"/v1/users/{p}{u.user_id}",
                {
                    "site_id": p + u.site_id,
                    "email": u.email or f"{u.user_id}@example.com",
                    "status": u.status,
                },
                expect=(200, 201),
            )
            for a in u.accounts:
                self.call(
                    "POST",
                    f"/v1/users/{p}{u.user_id}/accounts",
                    {"account_id": p + a},
                    expect=(200, 201),
                )
        if world.later_contracts:
            self._sync(source, f"{p}#2", now - timedelta(seconds=1), [], world.later_contracts, p)
        yield HttpChecker(self, p)

    def _sync(
        self,
        source: str,
        batch_id: str,
        at: datetime,
        accounts: list[AccountFx],
        contracts: list[ContractFx],
        p: str,
    ) -> None:
        tagged = [
            ContractFx(
                contract_id=p + c.contract_id,
                private_label=c.private_label,
                state=c.state,
                parties=[
                    PartyFx(account_id=p + x.account_id, role_type=x.role_type) for x in c.parties
                ],
            )
            for c in contracts
        ]
        payload = batch_payload(source, batch_id, at, accounts, tagged)
        self.call("POST", "/v1/aspire/batches", payload, expect=(200,))
