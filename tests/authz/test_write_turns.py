"""SQLite writers take turns through a file lock beside the database: across processes
(each forked worker its own), with a deadline, and nothing written without a turn."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from authz.db import Database, make_engine
from authz.errors import Unavailable
from authz.schema import upgrade

BUMP = text("UPDATE service_state SET data_version = data_version + 1")
VERSION = text("SELECT data_version FROM service_state")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path}/turns.sqlite3"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    database = Database.from_url(url)
    yield database
    database.dispose()


def _version(db: Database) -> int:
    with db.read() as s:
        return int(s.execute(VERSION).scalar_one())


def _someone_else_could_write(db: Database) -> bool:
    fd = os.open(f"{db.engine.url.database}.write-turn", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases it when taken
    return True


def test_a_write_holds_the_turn_until_it_ends(db: Database) -> None:
    with db.write() as s:
        s.execute(BUMP)
        assert not _someone_else_could_write(db)
    assert _someone_else_could_write(db)
    assert _version(db) == 1


def test_no_turn_within_the_deadline_is_unavailable_and_writes_nothing(db: Database) -> None:
    with db.write() as s:  # opens the turn file
        s.execute(BUMP)
    assert db._turns is not None
    db._turns.timeout = 0.2
    other = os.open(f"{db.engine.url.database}.write-turn", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(Unavailable, match="busy with other writes"), db.write() as s:
            s.execute(BUMP)
    finally:
        os.close(other)
    assert _version(db) == 1
    with db.write() as s:
        s.execute(BUMP)
    assert _version(db) == 2


def test_a_forked_worker_waits_for_the_parents_turn(db: Database) -> None:
    """A flock belongs to the open file: a child using its parent's would share the parent's
    turn (and wait on SQLite's own lock instead). Each process opens the file itself."""
    assert db._turns is not None
    with db.write() as s:  # the parent has opened the turn file before forking
        s.execute(BUMP)
    holding_r, holding_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no turn while the parent writes, and said so by the turns
        code = 1
        try:
            os.read(holding_r, 1)
            db._turns.timeout = 0.2
            with db.write() as child:
                child.execute(BUMP)
        except Unavailable as exc:
            code = 0 if "busy with other writes" in exc.detail else 2
        finally:
            os._exit(code)
    with db.write() as s:
        s.execute(BUMP)
        os.write(holding_w, b"x")
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _version(db) == 2
