"""Request bodies as gunicorn hands them over: with a Content-Length, chunked, cut short,
too large. The app reads a body with a Content-Length straight from gunicorn's stream and a
chunked one through werkzeug (`service.api._read_raw`); the test client takes neither path."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from authz.config import Settings
from authz.runtime import Runtime
from tests.conftest import T0
from tests.test_live_service import Server

CHECK = json.dumps({"user_id": "nobody", "action": "view", "contract_id": "C-1"}).encode()
LIMIT = 64 * 1024  # service.api.SMALL_BODY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    where = tmp_path_factory.mktemp("bodies")
    settings = Settings(database_url=f"sqlite:///{where}/live.sqlite3", journal_dir=where / "j")
    with Runtime.open(settings, migrate=True) as rt:
        key = rt.keys.create("live", frozenset({"decide"}), T0)
    srv = Server(settings.database_url, settings.journal())
    srv.start()
    yield srv, key
    srv.kill()


def _post(
    live: tuple[Server, str], headers: str, body: bytes, end_early: bool = False
) -> tuple[int, dict]:
    """POST /v1/check over a raw socket: (status, JSON answer)."""
    srv, key = live
    head = (
        f"POST /v1/check HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nConnection: close\r\n{headers}\r\n"
    )
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head.encode() + body)
        if end_early:
            s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    status_line, _, rest = got.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def _chunked(body: bytes, size: int) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_body_with_its_length_is_read_whole(live: tuple[Server, str]) -> None:
    status, answer = _post(live, f"Content-Length: {len(CHECK)}\r\n", CHECK)
    assert status == 200
    assert answer["allowed"] is False and answer["decision_id"]


def test_a_chunked_body_is_read_whole(live: tuple[Server, str]) -> None:
    status, answer = _post(live, "Transfer-Encoding: chunked\r\n", _chunked(CHECK, 7))
    assert status == 200
    assert answer["allowed"] is False and answer["decision_id"]


def test_a_body_cut_short_of_its_length_is_400(live: tuple[Server, str]) -> None:
    status, answer = _post(live, f"Content-Length: {len(CHECK) + 40}\r\n", CHECK, end_early=True)
    assert status == 400
    assert "allowed" not in answer
    assert answer["errors"][0]["field"] == "body"
    assert f"after {len(CHECK)} of the {len(CHECK) + 40} bytes" in answer["errors"][0]["message"]


def test_a_length_past_the_limit_is_413_before_the_body_is_sent(
    live: tuple[Server, str],
) -> None:
    status, answer = _post(live, f"Content-Length: {LIMIT + 1}\r\n", b"", end_early=True)
    assert status == 413
    assert str(LIMIT) in answer["detail"]


def test_a_chunked_body_past_the_limit_is_413(live: tuple[Server, str]) -> None:
    padded = json.dumps({"user_id": "u", "pad": "x" * LIMIT}).encode()
    status, answer = _post(live, "Transfer-Encoding: chunked\r\n", _chunked(padded, 8192))
    assert status == 413
    assert str(LIMIT) in answer["detail"]
