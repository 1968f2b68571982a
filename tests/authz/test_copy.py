"""PostgreSQL COPY in binary form: the types `insert_rows` sends its rows as."""

from __future__ import annotations

from sqlalchemy import JSON, Column, MetaData, String, Table

from authz.bulk import _copy_types
from authz.log_rows import RECORD_COLUMNS
from authz.models import AccountTerm, ContractParty, DecisionRecord


def test_the_decision_logs_rows_go_in_binary_with_their_columns_types() -> None:
    assert _copy_types(DecisionRecord.__table__, RECORD_COLUMNS) == [
        "int8",  # seq
        "varchar",  # decision_id
        "timestamptz",  # at
        "varchar",  # caller
        "varchar",  # kind
        "text",  # input
        "bool",  # allowed
        "text",  # reasons
        "varchar",  # policy_version
        "int8",  # data_version
        "varchar",  # prev_hash
        "varchar",  # user_id
        "varchar",  # contract_id
        "varchar",  # hash
    ]


def test_the_replicas_bulk_rows_go_in_binary() -> None:
    assert (
        _copy_types(ContractParty.__table__, ("contract_id", "account_id", "role_type"))
        == ["varchar"] * 3
    )
    assert _copy_types(AccountTerm.__table__, ("term", "account_id")) == ["varchar"] * 2


def test_a_column_of_another_kind_sends_the_rows_as_text() -> None:
    table = Table("t", MetaData(), Column("id", String(8)), Column("doc", JSON))
    assert _copy_types(table, ("id", "doc")) is None
    assert _copy_types(table, ("id",)) == ["varchar"]
