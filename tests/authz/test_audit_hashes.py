"""The decision log's hashes: the bytes each entry's hash covers, in the forms entries were
first hashed in."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from authz import audit, log_rows
from authz.decisions import CheckRequest
from authz.models import DecisionRecord
from authz.runtime import Runtime

# Any text, with lone surrogates left out: neither form can encode those.
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
ENTRY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(TEXT, ENTRY_VALUES, max_size=12))
def test_canonical_bytes_are_the_stdlib_forms(row: dict) -> None:  # type: ignore[type-arg]
    """Entries hashed before orjson used json.dumps; they must verify the same way now."""
    stdlib = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert audit.canonical(row) == stdlib.encode()


@given(st.datetimes(timezones=st.just(UTC)))
def test_isoformat_is_the_stdlib_form(at: datetime) -> None:
    assert audit.isoformat(at) == at.isoformat()


def test_a_stored_entrys_hash_is_that_of_the_stdlib_form(logged: Runtime) -> None:
    """A real entry (time, reasons, input as stored) hashes as json.dumps would have hashed
    it before orjson, and entries written after it chain on."""
    with logged.db.write() as s:
        last = s.scalar(select(DecisionRecord).order_by(DecisionRecord.seq.desc()).limit(1))
        assert last is not None
        row = audit.content(last)
        stdlib = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert (
            audit.entry_hash(row["prev_hash"], row)
            == hashlib.sha256(row["prev_hash"].encode() + b"\n" + stdlib.encode()).hexdigest()
            == last.hash
        )
    logged.decider.check(CheckRequest("u1", "view", "C1"))
    logged.log.flush()
    assert audit.verify(logged.db) == (5, [])


ENTRIES = st.builds(
    audit.LogEntry,
    decision_id=TEXT,
    at=st.datetimes(timezones=st.just(UTC)),
    caller=TEXT,
    kind=st.sampled_from(["check", "batch", "explain"]),
    request=st.fixed_dictionaries(
        {"user_id": TEXT, "action": TEXT, "contract_id": TEXT, "site_id": st.none() | TEXT},
        optional={"correlation_id": TEXT},
    ),
    allowed=st.booleans(),
    policy_version=TEXT,
    data_version=st.integers(0, 2**63 - 1),
)


@given(
    ENTRIES,
    st.lists(TEXT, max_size=3).map(tuple),
    st.integers(0, 2**62),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)
def test_the_writer_hashes_each_entrys_canonical_content(
    e: audit.LogEntry, reasons: tuple[str, ...], seq: int, prev: str
) -> None:
    """The writer builds the hashed bytes from parts serialized once (`prepared`); the hash
    is `entry_hash` of the entry's content as `content` reads it back from its row."""
    (row,) = log_rows.Chained(seq, prev, [e], lambda _: reasons)
    stored = DecisionRecord(**dict(zip(log_rows.RECORD_COLUMNS, row, strict=True)))
    assert row[0] == seq + 1 and row[10] == prev
    assert row[-1] == audit.entry_hash(prev, audit.content(stored))


@given(
    ENTRIES,
    st.lists(
        st.tuples(
            st.sampled_from(["same", "at", "caller", "kind", "policy_version", "data_version"]),
            TEXT,
            st.booleans(),
            st.lists(TEXT, max_size=2).map(tuple),
        ),
        max_size=5,
    ),
    st.datetimes(timezones=st.just(UTC)),
)
def test_entries_written_together_hash_their_own_content(
    first: audit.LogEntry,
    then: list[tuple[str, str, bool, tuple[str, ...]]],
    other_time: datetime,
) -> None:
    """Entries prepared in one write serialize what they share with the entry before once
    (`SharedKeys`); each still hashes its own content, whether it shares all of it, or
    differs in its time, caller, kind or either version."""
    changes = {
        "same": {},
        "at": {"at": other_time},
        "caller": {"caller": first.caller + "x"},
        "kind": {"kind": "explain" if first.kind != "explain" else "check"},
        "policy_version": {"policy_version": first.policy_version + "x"},
        "data_version": {"data_version": first.data_version // 2},
    }
    entries, reasons = [first], [()]
    for n, (what, decision_id, allowed, why) in enumerate(then):
        previous = entries[-1]
        entries.append(
            dataclasses.replace(
                previous, decision_id=f"{decision_id}{n}", allowed=allowed, **changes[what]
            )
        )
        reasons.append(why)
    reasons_of = {id(e): r for e, r in zip(entries, reasons, strict=True)}
    prev = "0" * 64
    for row in log_rows.Chained(0, prev, entries, lambda e: reasons_of[id(e)]):
        stored = DecisionRecord(**dict(zip(log_rows.RECORD_COLUMNS, row, strict=True)))
        assert row[-1] == audit.entry_hash(prev, audit.content(stored))
        prev = row[-1]


def test_an_equal_time_in_another_offset_is_serialized_again() -> None:
    """Two times equal as instants but written differently are not taken for the same."""
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    e = audit.LogEntry("d1", at, "portal", "check", {}, True, "p", 1)
    shifted = dataclasses.replace(e, at=at.astimezone(timezone(timedelta(hours=2))))
    shared = log_rows.SharedKeys()
    assert shared.of(e)[0] != shared.of(shifted)[0]
    assert b"12:00:00+02:00" in shared.of(shifted)[0]
