"""The data version and the replica's freshness, kept in the single `service_state` row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from authz.models import ServiceState


@dataclass(frozen=True)
class Freshness:
    """What the replica holds: the data version and the newest applied sync."""

    data_version: int
    last_batch_id: str | None
    last_synced_at: datetime | None
    extracted_at: datetime | None

    def age_seconds(self, now: datetime) -> float | None:
        """Now minus the newest applied `extracted_at`, or None before the first batch."""
        if self.extracted_at is None:
            return None
        return round((now - self.extracted_at).total_seconds(), 3)


def read_freshness(session: Session) -> Freshness:
    """Read the state row inside the caller's transaction."""
    row = session.execute(
        select(
            ServiceState.data_version,
            ServiceState.last_batch_id,
            ServiceState.last_synced_at,
            ServiceState.newest_extracted_at,
        ).where(ServiceState.id == 1)
    ).one()
    return Freshness(*row)


def bump_data_version(session: Session) -> int:
    """Count one more change that can alter a decision; returns the new version.

    The UPDATE takes the row lock, so concurrent writers get distinct versions.
    """
    session.execute(
        update(ServiceState)
        .where(ServiceState.id == 1)
        .values(data_version=ServiceState.data_version + 1)
    )
    return int(
        session.execute(select(ServiceState.data_version).where(ServiceState.id == 1)).scalar_one()
    )
