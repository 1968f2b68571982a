"""Everything an in-process caller needs, wired once: store, policy and the domain services."""

from __future__ import annotations

from dataclasses import dataclass

from authz.audit import SqlDecisionLog
from authz.config import Settings
from authz.db import Database
from authz.decisions import Decider
from authz.directory import Directory
from authz.handover import HandOverLog
from authz.journal import Journal
from authz.keys import Keys
from authz.listing import Lister
from authz.policy import Policy
from authz.replica import Replica
from authz.schema import upgrade


@dataclass
class Runtime:
    settings: Settings
    db: Database
    policy: Policy
    decider: Decider
    replica: Replica
    directory: Directory
    keys: Keys
    lister: Lister
    log: SqlDecisionLog | HandOverLog

    def close(self) -> None:
        """Write the decision log's buffer, then release the store's connections."""
        try:
            self.log.close()
        finally:
            self.decider.close()
            self.db.dispose()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @classmethod
    def open(
        cls,
        settings: Settings,
        db: Database | None = None,
        migrate: bool = False,
        policy: Policy | None = None,
    ) -> Runtime:
        """Load the policy (unless given) and connect to the store.

        :raises PolicyLoadError: when the policy does not load; nothing is served then.
        """
        policy = policy or Policy.load(settings.policy_dir)
        db = db or Database.from_url(settings.database_url, settings.read_timeout_ms)
        if migrate:
            upgrade(db.engine)
        journal = settings.journal()
        log: SqlDecisionLog | HandOverLog
        if settings.log_handover and journal is not None:
            log = HandOverLog(
                Journal(journal),
                max_backlog=SqlDecisionLog.default_max_backlog(db),
                max_wait=settings.read_timeout_ms / 1000,
            )
        else:
            log = SqlDecisionLog(
                db,
                policy,
                Journal(journal) if journal is not None else None,
                max_wait=settings.read_timeout_ms / 1000,
            )
        return cls(
            settings=settings,
            db=db,
            policy=policy,
            decider=Decider(db, policy, settings, log),
            replica=Replica(db, settings.aspire_source),
            directory=Directory(db, policy, settings.aspire_source),
            keys=Keys(db),
            lister=Lister(db, policy, settings),
            log=log,
        )
