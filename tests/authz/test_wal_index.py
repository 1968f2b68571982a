"""A SQLite store's WAL index stamps what the store holds: every commit changes it, from any
process, and reads do not. The version probe answers from its last read while the stamp
taken before that read still holds (`VersionProbe.unchanged`)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import authz.state
from authz.db import Database
from authz.state import WAL_INDEX_HEADER, VersionProbe, WalIndex, wal_index_path
from tests.conftest import sqlite_copy

BUMP = "UPDATE service_state SET data_version = data_version + 1"


@pytest.fixture
def db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(sqlite_copy(sqlite_template, tmp_path))
    yield database
    database.dispose()


@pytest.fixture
def probe(db: Database) -> Iterator[VersionProbe]:
    found = VersionProbe(db.read_engine)
    yield found
    found.close()


def bump(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(BUMP))


def bump_in_another_process(db: Database) -> None:
    """A commit by a process that shares nothing with this one but the files."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        f"c.execute('{BUMP}'); c.close()"
    )
    subprocess.run([sys.executable, "-c", script, db.engine.url.database], check=True)


def warm(probe: VersionProbe) -> int:
    """Two reads: the second, on a connection that has read before, takes a stamp."""
    probe.read()
    version = probe.read()
    assert probe.unchanged() == version
    return version


def test_reads_leave_the_stamp_and_a_commit_of_another_process_changes_it(
    db: Database, probe: VersionProbe
) -> None:
    version = warm(probe)
    index = WalIndex(wal_index_path(db.engine))  # type: ignore[arg-type]
    try:
        stamp = index.stamp()
        with db.engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM contracts")).all()
        assert stamp is not None and index.stamp() == stamp
        assert probe.unchanged() == version
        bump_in_another_process(db)
        assert index.stamp() != stamp
    finally:
        index.close()
    assert probe.unchanged() is None
    assert probe.read() == version + 1
    assert probe.unchanged() == version + 1


def test_a_new_connection_takes_no_stamp_until_it_has_read(probe: VersionProbe) -> None:
    version = probe.read()
    assert probe.unchanged() is None
    assert probe.read() == version and probe.unchanged() == version


def test_the_stamp_is_taken_before_the_read_so_a_commit_right_after_it_is_seen(
    db: Database, probe: VersionProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that lands between the read and the answer: stamped after the read, the
    stamp would hold the commit and the version would not."""
    version = warm(probe)
    read = authz.state._read_sqlite

    def then_a_commit(conn: Any) -> int:
        found = read(conn)
        bump(db)
        return found

    monkeypatch.setattr(authz.state, "_read_sqlite", then_a_commit)
    probe.unchanged()  # nothing changed yet: no read
    bump(db)
    assert probe.unchanged() is None
    assert probe.read() == version + 1  # and the commit after it lands
    monkeypatch.undo()
    assert probe.unchanged() is None
    assert probe.read() == version + 2


def test_closing_the_probe_on_another_thread_ends_every_stamp(
    db: Database, probe: VersionProbe
) -> None:
    warm(probe)
    with db.engine.connect() as conn:  # another connection: the WAL index stays
        conn.execute(text("SELECT 1 FROM service_state")).all()
        closer = threading.Thread(target=probe.close)
        closer.start()
        closer.join()
        # The file number of the index closed is free: the same file opened under it again.
        closed = probe._local.seen[1]._fd
        reopened = [WalIndex(wal_index_path(db.engine)) for _ in range(8)]  # type: ignore[arg-type]
        try:
            assert closed in {i._fd for i in reopened}
            assert probe.unchanged() is None
        finally:
            for index in reopened:
                index.close()


def test_a_dropped_connection_ends_its_stamp(probe: VersionProbe) -> None:
    warm(probe)
    probe._drop(probe._local.held[1])
    assert probe.unchanged() is None


def write_header(path: Path, first: bytes, second: bytes) -> WalIndex:
    path.write_bytes(first + second + bytes(40))
    return WalIndex(str(path))


def test_a_header_being_written_or_cut_short_is_no_stamp(tmp_path: Path) -> None:
    same = bytes(range(WAL_INDEX_HEADER))
    other = bytes([1]) + same[1:]
    for first, second, whole in ((same, same, True), (same, other, False), (same, b"", False)):
        index = write_header(tmp_path / "authz.sqlite3-shm", first, second)
        try:
            assert (index.stamp() == same) is whole
            assert whole or index.stamp() is None
        finally:
            index.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/authz/authz.sqlite3", "/var/lib/authz/authz.sqlite3-shm"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:authz.sqlite3?mode=ro&uri=true", None),
    ],
)
def test_where_the_wal_index_is(url: str, expected: str | None) -> None:
    from sqlalchemy import create_engine

    assert wal_index_path(create_engine(url)) == expected
