"""listing: role types, account search terms, a covering party index

Revision ID: 0002
Revises: 0001
"""

import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WORD = re.compile(r"\w+")


def upgrade() -> None:
    op.create_table(
        "role_types",
        sa.Column("role_type", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("role_type", name=op.f("pk_role_types")),
    )
    op.create_table(
        "account_terms",
        sa.Column(
            "term",
            sa.String(length=512).with_variant(
                postgresql.VARCHAR(512, collation="C"), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name=op.f("fk_account_terms_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("term", "account_id", name=op.f("pk_account_terms")),
    )
    op.create_index("ix_account_terms_account", "account_terms", ["account_id"])
    with op.batch_alter_table("contract_parties") as batch:
        batch.drop_index("ix_contract_parties_account")
        batch.create_index(
            "ix_contract_parties_account_contract", ["account_id", "contract_id", "role_type"]
        )
    # Fill the new tables from what the replica already holds.
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "INSERT INTO role_types (role_type) SELECT DISTINCT role_type FROM contract_parties"
        )
    )
    rows = conn.execute(sa.text("SELECT account_id, name FROM accounts")).all()
    terms = sorted({(t, a) for a, name in rows for t in [a.lower(), *WORD.findall(name.lower())]})
    if terms:
        conn.execute(
            sa.text("INSERT INTO account_terms (term, account_id) VALUES (:t, :a)"),
            [{"t": t, "a": a} for t, a in terms],
        )


def downgrade() -> None:
    with op.batch_alter_table("contract_parties") as batch:
        batch.drop_index("ix_contract_parties_account_contract")
        batch.create_index("ix_contract_parties_account", ["account_id", "contract_id"])
    op.drop_index("ix_account_terms_account", table_name="account_terms")
    op.drop_table("account_terms")
    op.drop_table("role_types")
