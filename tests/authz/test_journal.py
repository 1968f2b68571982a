"""The decision log's journal: an entry answered is not lost when its process crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from authz import audit
from authz.config import ROOT, Settings
from authz.decisions import CheckRequest
from authz.errors import Unavailable
from authz.journal import SUFFIX, Journal
from authz.models import DecisionRecord
from authz.runtime import Runtime
from service import create_app
from tests.conftest import World, contract

# A process that decides, with its log writer stopped (nothing reaches the store), prints
# the decision ids it answered, then is killed.
CRASHING = """
import json, os, signal, sys
from pathlib import Path
from authz.config import Settings
from authz.decisions import CheckRequest
from authz.runtime import Runtime

url, policies, journal = sys.argv[1:4]
rt = Runtime.open(Settings(database_url=url, policy_dir=Path(policies), journal_dir=Path(journal)))
rt.log._closed = True
rt.log._wake.set()
rt.log._thread.join()
ids = [rt.decider.check(CheckRequest("u1", "view", "C1"), caller="portal").decision_id]
batch = [CheckRequest("u1", "make_payment", "C2"), CheckRequest("ghost", "view", "C1")]
ids += [d.decision_id for d in rt.decider.check_batch(batch, caller="payments")]
explained = rt.decider.explain(CheckRequest("u1", "make_payment", "C2"), caller="support")
ids.append(explained.decision.decision_id)
print(json.dumps(ids), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def decided(world: World, rt: Runtime) -> Runtime:
    world.site("default")
    world.sync([contract("C1", "A1:Customer"), contract("C2", "A1:Customer", state="closed")])
    world.user("u1", "default", "A1")
    rt.log.close()  # this test's own writer thread claims nothing behind its back
    return rt


def _crash_after_deciding(settings: Settings) -> list[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING,
            settings.database_url,
            str(settings.policy_dir),
            str(settings.journal()),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    ids: list[str] = json.loads(done.stdout)
    return ids


def _stored(rt: Runtime, ids: list[str]) -> dict[str, tuple[bool, list[str]]]:
    return {
        r.decision_id: (r.allowed, r.reasons)
        for r in audit.read(rt.db, limit=100)
        if r.decision_id in ids
    }


def _segments(settings: Settings) -> list[str]:
    journal = settings.journal()
    assert journal is not None
    return [p.name for p in journal.iterdir() if p.name.endswith(SUFFIX)]


def test_entries_answered_before_a_crash_are_written_by_another_process(
    decided: Runtime, settings: Settings
) -> None:
    ids = _crash_after_deciding(settings)
    assert len(ids) == 4
    assert _stored(decided, ids) == {}  # the crash came before any write to the store
    assert len(_segments(settings)) == 1

    assert decided.log.replay_orphans() == 4
    assert _stored(decided, ids) == {
        ids[0]: (True, []),
        ids[1]: (False, ["CONTRACT_CLOSED"]),  # reasons worked out from the journaled facts
        ids[2]: (False, ["USER_NOT_FOUND"]),
        ids[3]: (False, ["CONTRACT_CLOSED"]),
    }
    assert audit.verify(decided.db) == (4, [])  # entries checked, problems
    assert _segments(settings) == []


def test_a_new_process_writes_what_a_crashed_one_left_by_itself(
    decided: Runtime, settings: Settings
) -> None:
    ids = _crash_after_deciding(settings)
    with Runtime.open(settings) as later:  # as gunicorn's replacement worker would start
        deadline = time.monotonic() + 15
        while len(_stored(later, ids)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_stored(later, ids)) == 4
    assert _segments(settings) == []


def test_entries_stored_before_their_segment_was_deleted_are_not_written_twice(
    decided: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = decided.log.journal
    assert journal is not None
    monkeypatch.setattr(journal, "release", lambda: None)  # a crash right after the commit
    decided.decider.check(CheckRequest("u1", "view", "C1"))
    decided.log.flush()
    journal.close()
    with decided.db.read() as s:
        before = s.scalar(select(func.count()).select_from(DecisionRecord))
    assert before == 1
    assert len(_segments(settings)) == 1

    assert decided.log.replay_orphans() == 0
    with decided.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DecisionRecord)) == before
    assert _segments(settings) == []


def test_the_segment_of_a_live_process_is_not_claimed(decided: Runtime, settings: Settings) -> None:
    with Runtime.open(settings) as other:
        other.log.close()  # its writer stopped; its journal opens a segment at the next entry
        d = other.decider.check(CheckRequest("u1", "view", "C1"))
        assert decided.log.replay_orphans() == 0
        assert _stored(decided, [d.decision_id]) == {}
        other.log.flush()
    assert _stored(decided, [d.decision_id]) == {d.decision_id: (True, [])}
    assert _segments(settings) == []


def test_a_line_cut_short_by_the_crash_is_left_out(decided: Runtime, settings: Settings) -> None:
    entries = []
    journal = decided.log.journal
    assert journal is not None
    decided.log.record = entries.extend  # type: ignore[method-assign]
    decided.decider.check_batch([CheckRequest("u1", "view", "C1")] * 2)
    lines = b"".join(audit.journal_line(e) for e in entries)
    directory = settings.journal()
    assert directory is not None
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"gone-1{SUFFIX}").write_bytes(lines + lines[:40])

    assert decided.log.replay_orphans() == 2
    assert len(_stored(decided, [e.decision_id for e in entries])) == 2


def test_a_line_holds_what_the_log_writes() -> None:
    at = datetime(2026, 11, 27, 5, 30, 1, 123456, tzinfo=UTC)
    user = {"found": True, "status": "active", "site_id": "s", "site_label": None}
    deny = audit.LogEntry(
        "d1", at, "portal", "batch", {"user_id": "u", "correlation_id": "é\n"}, False, "p", 7
    )
    deny = replace(deny, user=user, contract={"roles": ["Customer"], "found": True})
    allow = replace(deny, allowed=True, reasons=None)
    explained = replace(deny, kind="explain", reasons=("CONTRACT_CLOSED",))
    for entry in (deny, allow, explained):
        line = audit.journal_line(entry)
        assert line.count(b"\n") == 1 and line.endswith(b"\n")
        back = audit.entry_of_line(line[:-1])
        facts_kept = not entry.allowed and entry.reasons is None
        assert back == replace(
            entry,
            user=entry.user if facts_kept else None,
            contract=entry.contract if facts_kept else None,
        )


def test_a_journal_that_cannot_be_written_refuses_the_decision(
    decided: Runtime, settings: Settings, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with Runtime.open(replace(settings, journal_dir=blocked)) as rt:
        with pytest.raises(Unavailable, match="journal"):
            rt.decider.check(CheckRequest("u1", "view", "C1"))
        assert rt.log.backlog() == 0
        client = create_app({"RUNTIME": rt, "TESTING": True}).test_client()
        key = rt.keys.create("j", frozenset({"decide"}), datetime.now(UTC))
        got = client.post(
            "/v1/check",
            json={"user_id": "u1", "action": "view", "contract_id": "C1"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert got.status_code == 503
        assert got.mimetype == "application/problem+json"
        rt.log.flush()
    with decided.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DecisionRecord)) == 0


def test_a_forked_process_neither_writes_to_nor_deletes_its_parents_segment(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.append(b"parent\n")
    journal.seal()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through its exit code)
        journal.append(b"child\n")
        journal.seal()
        journal.release()
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    files = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert files == [b"parent\n"]  # the child's own segment deleted, the parent's intact
    journal.release()
    assert list(tmp_path.iterdir()) == []
