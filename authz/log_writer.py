"""The log writer: a process of its own that stores the decision log's entries.

The service's workers journal each decision's entries and hand the segments over
(`authz.handover`); the log writer claims them, stores their entries chained, works out
the reasons of denies, and deletes them. It claims as well the segments of any process of
the same store that ended without storing its own. The gunicorn master starts it, and
starts it again if it ends (`service/gunicorn_conf.py`); `authz log-writer` runs one by
hand. Several may run against one store (a host each, say): each claims its own segments,
and the chain's head is taken in each write's transaction.

It runs at a lower priority (`nice`) than the workers. Under load they preempt it, so a
request does not wait behind its writes; it catches up when they are idle, and when it
falls behind far enough the workers wait for it (`HandOverLog.max_backlog`). Every
entry was journaled before its decision was answered, so none is lost meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from authz.audit import SqlDecisionLog
from authz.config import Settings
from authz.db import Database
from authz.journal import Journal
from authz.policy import Policy

log = logging.getLogger("authz.log_writer")


@dataclass(frozen=True)
class WriterSettings:
    # How long it waits to look again for segments after finding none (when it finds some,
    # it looks again as soon as they are stored).
    interval: float = 0.2
    # Added to its niceness (0-19): the workers it writes for come first.
    nice: int = 10
    # Where the gunicorn master freezes each policy version it serves (for the reasons of
    # denies made under an earlier one); None: only the version of `Settings.policy_dir`.
    policy_copies: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WriterSettings:
        env = dict(os.environ if env is None else env)
        base = cls()
        copies = env.get("AUTHZ_POLICY_COPIES")
        return cls(
            interval=float(env.get("AUTHZ_LOG_WRITER_INTERVAL") or base.interval),
            nice=int(env.get("AUTHZ_LOG_WRITER_NICE") or base.nice),
            policy_copies=Path(copies) if copies else None,
        )


def run(settings: Settings, writer: WriterSettings, stop: threading.Event) -> None:
    """Store what the journal holds until `stop` is set or the process that started this
    one ends; then store what is left, once more.

    :raises PolicyLoadError: when the policy does not load.
    :raises ValueError: when the store has no journal (a SQLite store in memory).
    """
    journal = settings.journal()
    if journal is None:
        raise ValueError("a store in memory has no journal: its processes store their own logs")
    if writer.nice:
        os.nice(writer.nice)
    policy = Policy.load(settings.policy_dir)
    db = Database.from_url(settings.database_url, settings.read_timeout_ms)
    parent = os.getppid()
    entries = SqlDecisionLog(
        db,
        policy,
        Journal(journal),
        interval=writer.interval,
        claim_every=0,
        policy_copies=writer.policy_copies,
    )
    log.info("log writer storing the segments of %s", journal)
    try:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("the process that started the log writer ended; stopping")
                break
    finally:
        try:
            entries.close()
            entries.replay_orphans()
        finally:
            db.dispose()
