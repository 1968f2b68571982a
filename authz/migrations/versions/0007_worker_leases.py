"""worker leases: which data version each deciding process has seen (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 11:15:00

On PostgreSQL a process learns of each new data version by notification and confirms it
here; a change is answered only once every unexpired lease has seen it (`authz.watch`). The
table is made on SQLite too, where nothing writes it: one schema for both engines.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_leases",
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("seen_version", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_leases")),
    )


def downgrade() -> None:
    op.drop_table("worker_leases")
