"""The log writer: a process of its own that stores the decision log's entries.

The service's workers journal each decision's entries and hand the segments over
(`authz.handover`); the log writer claims them, stores their entries chained, works out
the reasons of denies, and deletes them. It claims as well the segments of any process of
the same store that ended without storing its own. With AUTHZ_LOG_WRITER=process the
gunicorn master starts it, and starts it again if it ends (`service/gunicorn_conf.py`);
`python -m service.log_writer` runs one by hand. Several may run against one store (a host
each, say): each claims its own segments, and the chain's head is taken in each write's
transaction.

It runs at a lower priority (`nice`) than the workers. Under load they preempt it, so a
request does not wait behind its writes; it catches up when they are idle, and when it
falls behind far enough the workers wait for it (`HandOverLog.max_backlog`). Every
entry was journaled before its decision was answered, so none is lost meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from authz.audit import LogObserver, SqlDecisionLog
from authz.config import Settings
from authz.db import Database
from authz.journal import Journal
from authz.log_rows import Gathered
from authz.policy import Policy

log = logging.getLogger("authz.log_writer")


@dataclass(frozen=True)
class WriterSettings:
    # The longest an entry waits, once handed over, before it is written: the writer gathers
    # the segments handed over meanwhile (both workers' seconds, under steady load) into one
    # transaction, unless `max_buffer` entries are gathered sooner.
    interval: float = 1.0
    # How often it looks for segments handed over.
    poll: float = 0.02
    # Added to its niceness (0-19): the workers it writes for come first (wrk at 8
    # connections of single checks on SQLite, check p99 over two runs each, alternating:
    # 5.50-5.55 ms at 10, 5.54-6.02 at 19, 6.19-6.63 at 3).
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


def run(
    settings: Settings,
    writer: WriterSettings,
    stop: threading.Event,
    observer: LogObserver | None = None,
) -> None:
    """Store what the journal holds until `stop` is set or the process that started this
    one ends; then store what is left, once more. `observer` is told of each failed write.

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
        db, policy, Journal(journal), policy_copies=writer.policy_copies, background=False
    )
    log.info("log writer storing the segments of %s", journal)
    gathered = Gathered()
    try:
        while not stop.wait(writer.poll):
            if os.getppid() != parent:
                log.warning("the process that started the log writer ended; stopping")
                break
            try:
                _step(entries, gathered, writer.interval)
            except Exception as exc:  # the store is down: the segments wait in the journal
                log.error("decision log write failed, its segments kept for later: %s", exc)
                gathered.keep()
                if observer is not None:
                    observer.write_failed()
                stop.wait(1.0)
    finally:
        try:
            if gathered.group:
                entries.write_gathered(gathered)
            entries.replay_orphans()
        except Exception:
            gathered.keep()
            raise
        finally:
            entries.close()
            db.dispose()


def _step(entries: SqlDecisionLog, gathered: Gathered, interval: float) -> None:
    """Gather the segments handed over since the last step; write what is gathered once it
    fills a transaction or has waited `interval`."""
    assert entries.journal is not None
    for segment in entries.journal.orphans(held=gathered.paths):
        entries.gather(gathered, segment)
        if len(gathered.pending) >= entries.max_buffer:
            break
    full = len(gathered.pending) >= entries.max_buffer
    if gathered.group and (full or time.monotonic() - gathered.since >= interval):
        entries.write_gathered(gathered)
