"""Engines and transactions, the same code on SQLite and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    InternalError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from authz.errors import Unavailable
from authz.watch import BUMPED, await_seen


def make_engine(
    url: str, statement_timeout_ms: int | None = None, custom_plans: bool = True, **kwargs: Any
) -> Engine:
    """Create an engine with the settings this service needs for durability and concurrency.

    `statement_timeout_ms` (PostgreSQL) cancels any statement running longer; SQLite engines
    get the same through `Database` (see `_sqlite_deadlines`). `custom_plans` (PostgreSQL):
    plan every run of a statement for its own values; False lets a prepared statement keep
    one plan, for statements whose best plan does not depend on their values.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    engine = create_engine(url, **kwargs)
    # Bulk inserts (a sync batch's contracts and parties) as multi-row INSERT statements of
    # up to 1,000 rows, not one statement per row through psycopg's pipeline: measured on a
    # 30,000-contract batch, 215,000 statements and 3,900 contracts/s before.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    _ping_when_idle(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # psycopg prepares a statement after a few runs, and PostgreSQL then plans it once
        # for any parameters: a fleet lessee's page got a plan made for a typical account
        # (measured: 15 ms became 150-250 ms). Plan each run for its own values.
        with dbapi_conn.cursor() as cursor:
            if custom_plans:
                cursor.execute("SET plan_cache_mode = force_custom_plan")
            if statement_timeout_ms is not None:
                cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        dbapi_conn.commit()

    return engine


# A pooled connection unused this long is pinged before it is handed out.
IDLE_BEFORE_PING = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle: a connection used
    moments ago is alive, and a ping on every checkout (SQLAlchemy's `pool_pre_ping`) cost a
    round trip on every decision. One that died in use fails its statement instead (a 503),
    and SQLAlchemy then drops every pooled connection of that time.
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < IDLE_BEFORE_PING:
            return
        try:
            autocommit = dbapi_conn.autocommit
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            if not autocommit:
                dbapi_conn.rollback()
        except Exception as exc:  # the pool replaces it with a new connection
            raise DisconnectionError(f"a pooled connection is dead: {exc}") from exc


# How long a SQLite writer waits for its turn, and then for SQLite's own lock.
SQLITE_WRITE_WAIT_S = 30


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_WRITE_WAIT_S}, **kwargs)
    # Multi-row INSERT statements, not executemany: sqlite3 takes the GIL back after each
    # row's step, and under busy threads each take waited its turn, stretching a decision
    # log write (and the store's one write lock it holds) past other writers' 30 s timeout.
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves so that writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a transaction that answered success survives a power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("single_statement"):
            return  # one SELECT in autocommit is a read transaction of its own
        # A writer that began as a reader could not upgrade under WAL without a retry.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")

    return engine


def _sqlite_deadlines(engine: Engine) -> None:
    """Statements run with the `read_timeout_ms` execution option are interrupted past it.

    SQLite has no statement timeout; its progress handler is called every 1,000 virtual
    machine steps, also while rows are fetched, and a true answer interrupts the statement.
    Every statement sets or clears it, so a writer never inherits a reader's deadline.
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _deadline(conn: Any, _cursor: Any, _stmt: Any, _params: Any, _ctx: Any, _many: Any) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        limit = conn.get_execution_options().get("read_timeout_ms")
        if limit is None:
            dbapi_conn.set_progress_handler(None, 0)
            return
        deadline = time.monotonic() + limit / 1000
        dbapi_conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)


class Database:
    """Sessions for reading and writing; store failures become `Unavailable`."""

    def __init__(self, engine: Engine, read_timeout_ms: int | None = None) -> None:
        """`read_timeout_ms`: reads running longer fail (as `Unavailable`), never hang."""
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._writer = engine.execution_options(sqlite_immediate=True)
        # A decision reads several tables; on PostgreSQL they must come from one snapshot
        # (SQLite's WAL read transactions are snapshots already). A pool of its own whose
        # connections start in REPEATABLE READ: setting the level on each checkout and
        # resetting it on return cost two more round trips per request.
        self._reader: Engine
        database = engine.url.database
        self._turns = (
            WriteTurns(f"{database}.write-turn")
            if self.is_sqlite and database and database != ":memory:"
            else None
        )
        if self.is_sqlite:
            _sqlite_deadlines(engine)
            self._reader = engine.execution_options(read_timeout_ms=read_timeout_ms)
        else:
            self._reader = make_engine(
                engine.url.render_as_string(hide_password=False),
                statement_timeout_ms=read_timeout_ms,
                isolation_level="REPEATABLE READ",
            )
        # Outside a transaction: on SQLite no BEGIN is sent; psycopg's autocommit is a
        # client-side flag (SQLAlchemy's AUTOCOMMIT level would fight our own BEGIN on SQLite).
        # On PostgreSQL a pool of its own, whose prepared statements keep one plan: a
        # decision's facts are primary-key lookups, planned the same for any ids, and custom
        # planning cost more than running them (0.57 ms against 0.31, measured at 1,000,000
        # contracts). Lists keep custom plans: their best plan depends on the account.
        self._single = (
            self._reader.execution_options(single_statement=True)
            if self.is_sqlite
            else make_engine(
                engine.url.render_as_string(hide_password=False),
                statement_timeout_ms=read_timeout_ms,
                custom_plans=False,
                isolation_level="AUTOCOMMIT",
            )
        )

    @property
    def read_engine(self) -> Engine:
        """The engine lists and explanations read through."""
        return self._reader

    @property
    def read_engines(self) -> tuple[Engine, ...]:
        """Engines whose events (`before_cursor_execute`...) see every read: the reader, and
        on PostgreSQL the pool of `statement` (on SQLite that one shares the reader's)."""
        return (self._reader,) if self.is_sqlite else (self._reader, self._single)

    @classmethod
    def from_url(cls, url: str, read_timeout_ms: int | None = None) -> Database:
        return cls(make_engine(url), read_timeout_ms)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction; raises `Unavailable` when the store cannot answer."""
        with (
            _store_errors(),
            Session(self._reader, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only Core connection in one snapshot, for the hot paths (decisions, lists):
        no ORM unit of work around statements that are built once and reused.

        :raises Unavailable: when the store cannot answer.
        """
        with _store_errors(), self._reader.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """A connection for one read statement, outside any transaction: a statement is a
        snapshot by itself, and BEGIN and COMMIT would cost two more round trips.

        :raises Unavailable: when the store cannot answer.
        """
        with _store_errors(), self._single.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error.

        :raises Unavailable: when the store cannot answer.
        """
        with (
            _store_errors(),
            self._turns.take() if self._turns else nullcontext(),
            Session(self._writer, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
        bumped = session.info.get(BUMPED)
        if bumped is not None and not self.is_sqlite:
            await_seen(self, bumped)  # every deciding process knows of it before it answers

    def ping(self) -> bool:
        """True when the store answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except DBAPIError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
        if self._turns:
            self._turns.close()
        if self._reader is not self.engine:
            self._reader.dispose()
        if not self.is_sqlite:
            self._single.dispose()


class WriteTurns:
    """Whose turn it is to write a SQLite file, across processes and threads: an exclusive
    `flock` on a file beside it, asked for every millisecond.

    SQLite's own wait for its write lock sleeps longer and longer between tries (up to
    100 ms), so a writer that has waited a while keeps losing the lock to writers that just
    arrived. Under batch load one worker's decision log waited past its bound and answered
    503s (4 in 3 loads of 8 s), while with turns none did (0 in 6), same machine, alternating.
    """

    BUSY = "the store is busy with other writes; try again shortly"

    def __init__(self, path: str, timeout: float = SQLITE_WRITE_WAIT_S) -> None:
        self.path = path
        self.timeout = timeout
        self._pid = -1
        self._fd = -1
        self._threads = threading.Lock()

    @contextmanager
    def take(self) -> Iterator[None]:
        """:raises Unavailable: when no turn came within `timeout` seconds."""
        if self._pid != os.getpid():  # a forked child opens its own (a flock is per open)
            self._threads = threading.Lock()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            raise Unavailable(self.BUSY)
        try:
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Unavailable(self.BUSY) from None
                    time.sleep(0.001)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._pid == os.getpid():
            os.close(self._fd)
            self._pid, self._fd = -1, -1


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError, InternalError, PoolTimeout) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise Unavailable(f"the data store cannot answer: {cause.__class__.__name__}") from exc
