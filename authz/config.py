"""Settings from the environment, with defaults that work on a fresh checkout."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent


def _default_database_url() -> str:
    return f"sqlite:///{ROOT / 'var' / 'authz.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    """Everything the library needs to run; read once at start."""

    database_url: str = field(default_factory=_default_database_url)
    aspire_source: str = "aspire-prod"
    sync_interval_seconds: int = 300
    policy_dir: Path = ROOT / "policies"
    retention_days: int = 400
    # A decision or list read running longer than this answers 503 instead of hanging.
    read_timeout_ms: int = 2000
    # The decision log's journal (authz.journal); None: beside a SQLite file, else under var/.
    journal_dir: Path | None = None
    # PostgreSQL: decisions learn of each new data version by notification and lease
    # (authz.watch) rather than reading it each time; off, every decision reads it.
    version_watch: bool = True
    # The decision log's entries are journaled and handed over to a log writer process
    # (authz.handover, authz.log_writer), not written by a thread of this one. gunicorn
    # sets it for its workers when it starts their log writer.
    log_handover: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read `DATABASE_URL` and the `AUTHZ_*` variables (see the README)."""
        env = dict(os.environ if env is None else env)
        base = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or base.database_url,
            aspire_source=env.get("AUTHZ_ASPIRE_SOURCE") or base.aspire_source,
            sync_interval_seconds=int(
                env.get("AUTHZ_SYNC_INTERVAL_SECONDS") or base.sync_interval_seconds
            ),
            policy_dir=Path(env.get("AUTHZ_POLICY_DIR") or base.policy_dir),
            retention_days=int(env.get("AUTHZ_DECISION_RETENTION_DAYS") or base.retention_days),
            read_timeout_ms=int(env.get("AUTHZ_READ_TIMEOUT_MS") or base.read_timeout_ms),
            journal_dir=Path(env["AUTHZ_JOURNAL_DIR"]) if env.get("AUTHZ_JOURNAL_DIR") else None,
            version_watch=env.get("AUTHZ_VERSION_WATCH", "1") != "0",
            log_handover=env.get("AUTHZ_LOG_HANDOVER") == "1",
        )

    def journal(self) -> Path | None:
        """The directory of the decision log's journal: one per store, since a process
        writes the segments it finds there into its own store. By default `X.journal`
        beside a SQLite file `X`; for any other store a directory under `var/journal/`
        named by a digest of the database URL (its password left out). None for a SQLite
        store in memory, which dies with its process, log and all."""
        if self.journal_dir is not None:
            return self.journal_dir
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            memory = url.database in (None, "", ":memory:") or "mode=memory" in str(url)
            return None if memory else Path(f"{url.database}.journal")
        named = url.render_as_string(hide_password=True)
        return ROOT / "var" / "journal" / hashlib.sha256(named.encode()).hexdigest()[:16]
