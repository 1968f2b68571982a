"""decision log: user and contract indexes by bucket of 2^14 entries

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 19:30:00

A write of the decision log rewrites every page it touches of the newest bucket's part of
each index. SQLite writes up to 20,000 entries per transaction, more than a quarter of a
2^16 bucket: inserting such writes into a copy of a 2,000,000-entry log cost 9.3-11.3 us
per entry with buckets of 2^16 and 7.9-8.2 with buckets of 2^14 (`authz.models`,
DECISION_BUCKET_BITS). The indexes are built again from the rows, on both engines, in the
migration's transaction: the decision log is locked until it ends (on PostgreSQL dropping an
index locks its table for reads too).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _index_by(bucket: str) -> None:
    op.drop_index("ix_decisions_user", table_name="decisions")
    op.drop_index("ix_decisions_contract", table_name="decisions")
    op.create_index("ix_decisions_user", "decisions", [sa.text(bucket), "user_id", "seq"])
    op.create_index("ix_decisions_contract", "decisions", [sa.text(bucket), "contract_id", "seq"])


def upgrade() -> None:
    _index_by("(seq >> 14)")


def downgrade() -> None:
    _index_by("(seq >> 16)")
