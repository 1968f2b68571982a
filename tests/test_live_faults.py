"""Faults injected into a running service: the database cut off behind a TCP proxy.

While the store cannot be reached every decision answers 503 problem+json, never an allow;
when it comes back the service answers again by itself, with no restart.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy.engine import make_url

from authz.config import Settings
from authz.runtime import Runtime
from tests.conftest import T0, World, contract
from tests.test_live_service import Server


class Proxy:
    """Forwards TCP connections to `target`; `cut()` drops them all and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                if not self.open.is_set():  # cut while this one was connecting: it goes too
                    client.close()
                    upstream.close()
                    continue
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets = []

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def proxied(settings: Settings) -> Iterator[tuple[Server, str, Proxy]]:
    url = make_url(settings.database_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    with Runtime.open(settings) as rt:
        world = World(rt)
        world.site("default")
        world.sync([contract("C1", "A1:Customer")])
        world.user("u1", "default", "A1")
        key = rt.keys.create("live", frozenset({"decide"}), T0)
    srv = Server(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), settings.journal()
    )
    srv.env["AUTHZ_READ_TIMEOUT_MS"] = "1000"
    srv.start()
    yield srv, key, proxy
    srv.kill()
    proxy.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_database_cut_off_is_a_503_and_the_service_recovers(
    proxied: tuple[Server, str, Proxy],
) -> None:
    srv, key, proxy = proxied
    s = requests.Session()
    h = {"Authorization": f"Bearer {key}"}
    body = {"user_id": "u1", "action": "view", "contract_id": "C1"}
    ask = {
        "check": lambda: s.post(f"{srv.url}/v1/check", json=body, headers=h, timeout=20),
        "batch": lambda: s.post(
            f"{srv.url}/v1/check/batch", json={"checks": [body]}, headers=h, timeout=20
        ),
        "list": lambda: s.get(f"{srv.url}/v1/users/u1/contracts", headers=h, timeout=20),
    }
    assert ask["check"]().json()["allowed"] is True
    proxy.cut()
    for _ in range(4):  # every worker meets the cut, on connections it holds or makes
        for name, call in ask.items():
            r = call()
            assert r.status_code == 503, (name, r.status_code, r.text)
            assert r.headers["Content-Type"] == "application/problem+json"
            assert not {"allowed", "results", "contracts"} & set(r.json()), name
    ready = s.get(f"{srv.url}/readyz", timeout=20)
    assert ready.status_code == 503
    proxy.restore()
    deadline = time.monotonic() + 30
    answers: list[int] = []
    while time.monotonic() < deadline:
        answers = [ask["check"]().status_code for _ in range(6)]
        if answers == [200] * 6:
            break
        time.sleep(0.2)
    assert answers == [200] * 6
    assert ask["check"]().json()["allowed"] is True
    assert [c["contract_id"] for c in ask["list"]().json()["contracts"]] == ["C1"]
