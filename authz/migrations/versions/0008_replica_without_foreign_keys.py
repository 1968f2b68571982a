"""replica: contract parties and account terms without foreign keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 13:00:00

The sync is the only writer of these tables. It refuses a party whose account is neither in
its batch nor already held, writes each contract before its parties in the same transaction,
and never deletes an account or a contract. The foreign keys checked each row again, one
index lookup and one row lock per key. On PostgreSQL that was most of a sync: for one
100,000-contract batch, alternating runs with and without these keys, first apply 4.6-5.4k
against 14.9-15.0k contracts/s, later extract 4.7-4.8k against 8.2-10.9k.

On SQLite the tables are rebuilt (rows copied); PostgreSQL drops the constraints in place.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contract_parties") as batch:
        batch.drop_constraint("fk_contract_parties_account_id_accounts", type_="foreignkey")
        batch.drop_constraint("fk_contract_parties_contract_id_contracts", type_="foreignkey")
    with op.batch_alter_table("account_terms") as batch:
        batch.drop_constraint("fk_account_terms_account_id_accounts", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("contract_parties") as batch:
        batch.create_foreign_key(
            "fk_contract_parties_contract_id_contracts",
            "contracts",
            ["contract_id"],
            ["contract_id"],
            ondelete="CASCADE",
        )
        batch.create_foreign_key(
            "fk_contract_parties_account_id_accounts", "accounts", ["account_id"], ["account_id"]
        )
    with op.batch_alter_table("account_terms") as batch:
        batch.create_foreign_key(
            "fk_account_terms_account_id_accounts",
            "accounts",
            ["account_id"],
            ["account_id"],
            ondelete="CASCADE",
        )
