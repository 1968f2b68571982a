"""decision log: on SQLite, times on a whole second stored as every other time is

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 08:40:00

SQLite keeps times as text, and `since` compares that text. SQLAlchemy writes
'2026-11-26 10:00:00.000000'; the decision log's bulk insert left its times to sqlite3,
which wrote '2026-11-26 10:00:00' when the fraction was zero, and that sorts before
'2026-11-26 10:00:00.000000': an entry made on a whole second was missing from
`since` = that second. The bulk insert now converts as SQLAlchemy does; this gives the
entries written before the same form. The times themselves, and so the chain's hashes, do
not change. PostgreSQL stores times as times and is left as it is.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("UPDATE decisions SET at = at || '.000000' WHERE length(at) = 19")


def downgrade() -> None:
    """Nothing to undo: both forms read back as the same time."""
