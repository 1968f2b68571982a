"""Schema migrations (Alembic), run by `authz db upgrade` and by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, insert, select

from authz.models import DecisionChain, ServiceState

GENESIS = "0" * 64  # the hash before the first decision

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic's config for our migrations, to run on `engine` (None: only to read them)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


@contextmanager
def _in_transaction(engine: Engine) -> Iterator[Config]:
    """Alembic's config, its commands run on one connection in one transaction."""
    with engine.begin() as conn:
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        yield config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` and make sure the single state row exists."""
    with _in_transaction(engine) as config:
        command.upgrade(config, revision)
    with engine.begin() as conn:
        seed(conn)


def seed(conn: Connection) -> None:
    """Add the single rows of the service's state and of the decision chain where missing."""
    if conn.execute(select(ServiceState.id)).first() is None:
        conn.execute(insert(ServiceState).values(id=1, data_version=0))
    if conn.execute(select(DecisionChain.id)).first() is None:
        conn.execute(
            insert(DecisionChain).values(
                id=1, last_seq=0, last_hash=GENESIS, anchor_seq=0, anchor_hash=GENESIS
            )
        )


def head() -> str:
    """The newest revision of the migrations."""
    found = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if found is None:
        raise LookupError(f"no migrations in {MIGRATIONS}")
    return found


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration from the models (a developer's tool)."""
    with _in_transaction(engine) as config:
        command.revision(config, message=message, autogenerate=True)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` (an operator's way back from a release)."""
    with _in_transaction(engine) as config:
        command.downgrade(config, revision)
