"""PostgreSQL: each process knows the store's data version without asking on every decision.

A decision may answer from facts read at data version V only if no change made after V has
been answered to anyone. The plain way to know is to read the store's version on every
decision (`authz.state.VersionProbe`): one round trip, which on these machines cost a check
about 27 us of the worker's CPU and 31-38 us of the database server's, more than the rest of
a warm decision. Here the changes tell the deciders instead, and wait for them:

- A process that decides holds a lease in `worker_leases`: the newest data version it has
  seen, and a time until which the lease holds (now + LEASE_S, renewed every RENEW_S).
  A thread of its own (`VersionWatch`) LISTENs for each new version, reads it, makes it the
  process's version, and only then writes it into its lease.
- A change (`authz.state.bump_data_version`) sends a notification with its commit, and is
  answered only after every lease has seen its version or run out (`await_seen`), up to
  AWAIT_LIMIT_S; past that, the change stays made but answers 503.
- A process answers from its own version only while its lease holds by its own clock,
  counted from before the renewal was sent, less MARGIN_S: by the time the store counts a
  lease as run out, its process has stopped trusting it and reads the store's version on
  every decision again, as it does while the watch is down or not yet up.

So every change answered before a decision began is seen by it, on every process, as with
a read per decision. What is given up: a process cut off from the store without notice
(no FIN) keeps answering from what it holds until its lease runs out (at most LEASE_S),
as it may while nothing can change in the store. A closed connection is seen at once: a
decision that finds the watch's socket closed reads the store's version, even before the
watch thread has run to see it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from select import POLLIN, POLLRDHUP, poll
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from authz.errors import Unavailable

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from authz.db import Database

log = logging.getLogger(__name__)

CHANNEL = "authz_data_version"
# Where a transaction notes the data version it made, for `Database.write` to await.
BUMPED = "authz_bumped_data_version"
LEASE_S = 2.0
RENEW_S = 0.5
MARGIN_S = 0.25
# How long a change waits for every lease to see it; a lease runs out within LEASE_S.
AWAIT_LIMIT_S = LEASE_S + 3.0
RETRY_S = 0.5

_VERSION = "SELECT data_version FROM service_state WHERE id = 1"
# Seen: nothing yet. Again after a lost connection: what it held was given up then.
_REGISTER = (
    "INSERT INTO worker_leases (worker_id, seen_version, lease_until) "
    "VALUES (%s, -1, now() + make_interval(secs => %s)) "
    "ON CONFLICT (worker_id) DO UPDATE SET seen_version = -1, lease_until = EXCLUDED.lease_until"
)
_RENEW = (
    "UPDATE worker_leases SET seen_version = %s, lease_until = now() + make_interval(secs => %s) "
    "WHERE worker_id = %s"
)
# Leases of processes that ended without closing, long run out.
_FORGET = "DELETE FROM worker_leases WHERE lease_until < now() - interval '1 hour'"
_BEHIND = text(
    "SELECT count(*) FROM worker_leases WHERE seen_version < :version AND lease_until > now()"
)


class VersionWatch:
    """The store's data version as this process was told of it, while its lease holds."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:16]}"
        self._pid = os.getpid()
        # (version, trusted until by time.monotonic(), the connection's socket); None while
        # not trusted.
        self._state: tuple[int, float, int] | None = None
        self._closed = threading.Event()
        # Written to by `close`, so the thread's wait on its connection ends at once.
        self._stop_r, self._stop_w = os.pipe()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="version-watch", daemon=True)
        self._thread.start()

    def version(self, *, look: bool = True) -> int | None:
        """The newest data version this process was told of, or None when that may be older
        than a change already answered (the caller then reads the store's version).
        `look=False` skips asking the kernel whether the connection was closed: only for a
        guess that costs nothing when wrong, never for answering."""
        state = self._state
        if state is None or os.getpid() != self._pid or time.monotonic() >= state[1]:
            return None
        if not look:
            return state[0]
        # The store may have closed the watch's connection before the watch thread has run
        # to see it: then ask the store. (A notification waiting unread needs no such care:
        # its change is not answered until this process's lease has seen it or run out.)
        # A fresh poll object per call, as one may not be polled by two threads at once.
        closed = poll()
        closed.register(state[2], POLLRDHUP)  # POLLHUP, POLLERR and POLLNVAL come unasked
        if closed.poll(0):
            return None
        return state[0]

    def close(self) -> None:
        """Stop watching and give up the lease, so no change waits for it."""
        if os.getpid() != self._pid or self._closed.is_set():
            return
        self._state = None
        self._closed.set()
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=RENEW_S + 5)
        self._close_conn()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        with contextlib.suppress(Exception), self._engine.begin() as conn:
            conn.execute(
                text("DELETE FROM worker_leases WHERE worker_id = :id"), {"id": self.worker_id}
            )

    def _run(self) -> None:
        told = False  # warned of this outage already: once per outage, not every retry
        while not self._closed.is_set():
            try:
                self._watch()
            except Exception as exc:  # the store is down or the connection broke
                if self._state is not None:
                    told = False
                if not self._closed.is_set() and not told:
                    log.warning("data version watch stopped, deciding by reads: %s", exc)
                    told = True
            self._state = None
            self._close_conn()
            self._closed.wait(RETRY_S)

    def _watch(self) -> None:
        pooled = self._engine.raw_connection()
        pooled.detach()  # ours until closed
        conn: Any = pooled.dbapi_connection
        self._conn = conn
        conn.autocommit = True
        woken = threading.Event()
        conn.add_notify_handler(lambda _n: woken.set())
        # Its lease need not outlive a crash of the server: this connection ends with it.
        conn.execute("SET synchronous_commit = off")
        conn.execute(f"LISTEN {CHANNEL}")
        conn.execute(_FORGET)
        conn.execute(_REGISTER, (self.worker_id, LEASE_S))
        socket = conn.fileno()
        waiting = poll()
        waiting.register(socket, POLLIN)
        waiting.register(self._stop_r, POLLIN)
        while not self._closed.is_set():
            woken.clear()
            sent = time.monotonic()
            row = conn.execute(_VERSION).fetchone()
            if row is None:
                raise LookupError("service_state holds no row")
            version = int(row[0])
            held = self._state
            # The new version is this process's before its lease says it has seen it.
            self._state = (version, held[1], socket) if held is not None else None
            if conn.execute(_RENEW, (version, LEASE_S, self.worker_id)).rowcount != 1:
                raise LookupError("this process's lease is gone")
            self._state = (version, sent + LEASE_S - MARGIN_S, socket)
            if woken.is_set():  # told of a change while reading: read again now
                continue
            if waiting.poll(RENEW_S * 1000):
                # A notification (handled, and `woken` set, as the next statement reads it),
                # a closed connection (which the next statement raises), or `close`.
                pass

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def notify_sql(version: int) -> Any:
    """The statement a change runs in its transaction: the notification goes out as it
    commits."""
    return text("SELECT pg_notify(:channel, :version)").bindparams(
        channel=CHANNEL, version=str(version)
    )


def await_seen(db: Database, version: int, limit_s: float = AWAIT_LIMIT_S) -> None:
    """Return once every unexpired lease has seen `version` (committed by the caller).

    :raises Unavailable: when some lease has neither seen it nor run out after `limit_s`;
        the change stays made.
    """
    deadline = time.monotonic() + limit_s
    pause = 0.0005
    while True:
        with db.statement() as conn:
            behind = conn.execute(_BEHIND, {"version": version}).scalar_one()
        if not behind:
            return
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"the change is saved (data_version {version}), but {behind} deciding "
                "process(es) have not confirmed it yet; try again shortly"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
