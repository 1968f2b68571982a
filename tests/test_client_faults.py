"""The portal's client against servers that are down, slow, or answer what a test scripts:
retries, deadlines, and answers that must never become an allow."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from authz.client import (
    AuthzClient,
    Check,
    ProtocolError,
    Unavailable,
)
from tests.test_live_service import _free_port

# Servers that are down or slow ----------------------------------------------------------------


class Sockets:
    """A TCP listener that counts connections and either drops them or never answers."""

    def __init__(self, answer_nothing: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.hold = answer_nothing
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.hold:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def dropping() -> Iterator[Sockets]:
    s = Sockets(answer_nothing=False)
    yield s
    s.close()


@pytest.fixture
def silent() -> Iterator[Sockets]:
    s = Sockets(answer_nothing=True)
    yield s
    s.close()


def test_a_server_that_is_down_is_unavailable_after_two_retries() -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens: connection refused
    with AuthzClient(url, "k", deadline=2.0) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            c.is_allowed("u1", "view", "C1")
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert time.monotonic() - started < 1.0  # three refusals and two short backoffs


def test_dropped_connections_are_retried_twice_then_unavailable(dropping: Sockets) -> None:
    with AuthzClient(dropping.url, "k") as c, pytest.raises(Unavailable) as caught:
        c.check("u1", "view", "C1")
    assert caught.value.attempts == 3
    assert dropping.accepted == 3


def test_read_timeouts_are_retried_within_the_deadline(silent: Sockets) -> None:
    with AuthzClient(silent.url, "k", read_timeout=0.2, deadline=1.5) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            c.explain("u1", "view", "C1")
    elapsed = time.monotonic() - started
    assert caught.value.attempts == silent.accepted == 3
    assert 0.6 <= elapsed < 1.5


def test_the_deadline_cuts_a_slow_call_short(silent: Sockets) -> None:
    with AuthzClient(silent.url, "k", read_timeout=2.0, deadline=0.4) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            c.check("u1", "view", "C1")
    elapsed = time.monotonic() - started
    assert caught.value.attempts == 1  # no time left for a second attempt
    assert 0.35 <= elapsed < 0.6


# A server that answers what a test tells it to ------------------------------------------------


@dataclass
class Canned:
    status: int = 200
    body: bytes | str | dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    port: int


class Scripted:
    """An HTTP/1.1 server (keep-alive) that plays a script of answers and records requests."""

    def __init__(self) -> None:
        self.script: list[Canned] = []
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        dict(self.headers),
                        json.loads(raw) if raw else None,
                        self.client_address[1],
                    )
                )
                canned = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                body = canned.body
                data = body if isinstance(body, bytes) else str(body).encode()
                if isinstance(body, dict):
                    data = json.dumps(body).encode()
                self.send_response(canned.status)
                self.send_header("Content-Type", canned.content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in canned.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def play(self, *answers: Canned) -> None:
        """Answer these in order; the last one is repeated."""
        self.script = list(answers)
        self.seen = []


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


ALLOW = {"allowed": True, "decision_id": "d1", "policy_version": "p1", "data_version": 3}
BUSY = Canned(503, {"status": 503, "code": "UNAVAILABLE", "detail": "store down"})


def test_a_503_is_retried_and_the_answer_after_it_is_used(scripted: Scripted) -> None:
    scripted.play(BUSY, BUSY, Canned(body=ALLOW))
    with AuthzClient(scripted.url, "k") as c:
        assert c.is_allowed("u1", "view", "C1") is True
    assert len(scripted.seen) == 3
    assert len({s.headers["X-Request-Id"] for s in scripted.seen}) == 1
    assert {s.headers["Authorization"] for s in scripted.seen} == {"Bearer k"}


def test_a_503_that_persists_is_unavailable_after_two_retries(scripted: Scripted) -> None:
    scripted.play(BUSY)
    with AuthzClient(scripted.url, "k") as c, pytest.raises(Unavailable) as caught:
        c.check_batch([Check("u1", "view", "C1")])
    e = caught.value
    assert (e.status, e.code, e.detail, e.attempts) == (503, "UNAVAILABLE", "store down", 3)
    assert len(scripted.seen) == 3


def test_retry_after_is_waited_for(scripted: Scripted) -> None:
    scripted.play(Canned(503, {}, {"Retry-After": "1"}), Canned(body=ALLOW))
    waits: list[float] = []
    with AuthzClient(scripted.url, "k", sleep=waits.append) as c:
        assert c.check("u1", "view", "C1").allowed is True
    assert waits == [1.0]  # the hint, not the (shorter) backoff, and waited once
    assert len(scripted.seen) == 2


def test_a_retry_after_beyond_the_deadline_ends_the_call_at_once(scripted: Scripted) -> None:
    scripted.play(Canned(503, {}, {"Retry-After": "30"}), Canned(body=ALLOW))
    with AuthzClient(scripted.url, "k", deadline=2.0) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            c.check("u1", "view", "C1")
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after == 30.0 and len(scripted.seen) == 1


def test_other_errors_are_not_retried(scripted: Scripted) -> None:
    scripted.play(Canned(500, {"status": 500, "code": "INTERNAL"}))
    with AuthzClient(scripted.url, "k") as c, pytest.raises(ProtocolError) as caught:
        c.check("u1", "view", "C1")
    assert caught.value.status == 500 and len(scripted.seen) == 1


def test_calls_reuse_one_pooled_connection(scripted: Scripted) -> None:
    scripted.play(Canned(body=ALLOW))
    with AuthzClient(scripted.url, "k") as c:
        for _ in range(5):
            c.check("u1", "view", "C1")
    assert len({s.port for s in scripted.seen}) == 1


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in ALLOW.items() if k != key}


NOT_AN_ALLOW = {
    "allowed as a string": Canned(body={**ALLOW, "allowed": "true"}),
    "allowed as a number": Canned(body={**ALLOW, "allowed": 1}),
    "allowed null": Canned(body={**ALLOW, "allowed": None}),
    "allowed missing": Canned(body=_without("allowed")),
    "decision_id missing": Canned(body=_without("decision_id")),
    "data_version a bool": Canned(body={**ALLOW, "data_version": True}),
    "allowed twice": Canned(
        body=b'{"allowed": false, "allowed": true, "decision_id": "d",'
        b' "policy_version": "p", "data_version": 1}'
    ),
    "not an object": Canned(body=b"[true]"),
    "not JSON": Canned(body=b"<html>allowed</html>"),
    "NaN": Canned(body=json.dumps({**ALLOW, "data_version": float("nan")})),
    "an HTML page": Canned(body=ALLOW, content_type="text/html"),
    "a redirect": Canned(302, b"", {"Location": "/elsewhere"}),
    "204": Canned(204, b""),
    "a 404 page that is not a problem": Canned(404, b"<h1>nope</h1>", content_type="text/html"),
}


@pytest.mark.parametrize("answer", NOT_AN_ALLOW.values(), ids=NOT_AN_ALLOW.keys())
def test_an_answer_that_does_not_validate_is_never_an_allow(
    scripted: Scripted, answer: Canned
) -> None:
    scripted.play(answer)
    with AuthzClient(scripted.url, "k") as c:
        with pytest.raises(ProtocolError):
            c.is_allowed("u1", "view", "C1")
        with pytest.raises(ProtocolError):
            c.check_batch([Check("u1", "view", "C1")])
    assert len(scripted.seen) == 2  # not retried


def test_a_batch_answer_that_does_not_match_the_checks_is_refused(scripted: Scripted) -> None:
    items = [{**ALLOW, "correlation_id": "b"}, {**ALLOW, "correlation_id": "a"}]
    sent = [Check("u1", "view", "C1", correlation_id=x) for x in "ab"]
    with AuthzClient(scripted.url, "k") as c:
        scripted.play(Canned(body={"results": items}))
        with pytest.raises(ProtocolError, match="correlation_id"):
            c.check_batch(sent)
        scripted.play(Canned(body={"results": items[:1]}))
        with pytest.raises(ProtocolError, match="1 results for 2 checks"):
            c.check_batch(sent)


def test_an_allow_with_reasons_of_a_deny_is_refused(scripted: Scripted) -> None:
    reason = {"code": "CONTRACT_CLOSED", "message": "closed"}
    scripted.play(Canned(body={**ALLOW, "conditions": [], "reasons": [reason]}))
    with AuthzClient(scripted.url, "k") as c, pytest.raises(ProtocolError):
        c.explain("u1", "view", "C1")


def test_a_cursor_handed_back_twice_ends_paging(scripted: Scripted) -> None:
    scripted.play(
        Canned(body={"accounts": [{"account_id": "A1", "name": "A"}], "next_cursor": "x"})
    )
    with AuthzClient(scripted.url, "k") as c, pytest.raises(ProtocolError, match="twice"):
        list(c.iter_eligible_accounts("default"))
    path = "/v1/sites/default/eligible-accounts"
    assert [s.path for s in scripted.seen] == [path, f"{path}?cursor=x"]
