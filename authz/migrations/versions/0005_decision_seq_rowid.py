"""decision log: on SQLite, seq is the table's rowid

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:40:00

On SQLite a BIGINT primary key gets an index of its own beside the table's rowid; declared
INTEGER it is the rowid, and each log entry writes one B-tree less (a 3,000-entry write into
a 1.2-million-entry log: 38-45 us per entry before, 30-40 after, on copies of one file).
The table is rebuilt (rows copied in order; about 30 s per million entries). PostgreSQL is
left as it is.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("decisions", recreate="always") as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), type_=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("decisions", recreate="always") as batch_op:
        batch_op.alter_column("seq", existing_type=sa.Integer(), type_=sa.BigInteger())
