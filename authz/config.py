"""Settings from the environment, with defaults that work on a fresh checkout."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
        )
