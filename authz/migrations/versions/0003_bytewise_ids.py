"""ids compare bytewise on PostgreSQL, as on SQLite

Keyset paging merges per-account runs in Python, so the database must order ids as Python
does (by code point). SQLite's BINARY collation does; on PostgreSQL the database's default
collation may be linguistic (en_US), so every id column gets COLLATE "C".

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = {
    "sites": ["site_id", "private_label"],
    "accounts": ["account_id", "source"],
    "contracts": ["contract_id", "source", "private_label"],
    "contract_parties": ["contract_id", "account_id", "role_type"],
    "users": ["user_id", "site_id"],
    "user_accounts": ["user_id", "account_id"],
    "role_types": ["role_type"],
    "account_terms": ["account_id"],
}


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(
                f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(128) COLLATE "{collation}"'
            )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
