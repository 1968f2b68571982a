"""A decision log entry as a stored row: its columns, the canonical bytes its hash covers,
and the rows of entries chained one after another (`authz.audit` writes them; how they are
read back and verified is `authz.audit_trail`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from authz.log_entry import LogEntry

# The columns of a stored entry, in the order `Chained` gives them.
RECORD_COLUMNS = (
    "seq",
    "decision_id",
    "at",
    "caller",
    "kind",
    "input",
    "allowed",
    "reasons",
    "policy_version",
    "data_version",
    "prev_hash",
    "user_id",
    "contract_id",
    "hash",
)


class SharedKeys:
    """The serialized keys whose values entries written together share (a batch's time,
    caller, kind, policy version and data version), kept for the last entry asked about:
    a batch's entries come one after another."""

    __slots__ = ("_last", "_pieces")

    def __init__(self) -> None:
        self._last: LogEntry | None = None
        self._pieces = (b"", b"")

    def of(self, e: LogEntry) -> tuple[bytes, bytes]:
        """The canonical bytes from after "allowed"'s value up to "decision_id"'s, and from
        after "input"'s up to "prev_hash"'s."""
        last = self._last
        if (
            last is None
            or e.at is not last.at  # the same time object: equal times may differ in offset
            or e.caller != last.caller
            or e.data_version != last.data_version
            or e.kind != last.kind
            or e.policy_version != last.policy_version
        ):
            self._pieces = (
                b',"at":'  # orjson writes a time as `isoformat` does
                + orjson.dumps(e.at)
                + b',"caller":'
                + orjson.dumps(e.caller)
                + b',"data_version":'
                + orjson.dumps(e.data_version)
                + b',"decision_id":',
                b',"kind":'
                + orjson.dumps(e.kind)
                + b',"policy_version":'
                + orjson.dumps(e.policy_version)
                + b',"prev_hash":"',
            )
            self._last = e
        return self._pieces


class Chained:
    """The entries as rows of RECORD_COLUMNS, chained after (`seq`, `prev`) as they are
    iterated (once): each hash is `entry_hash` of the entry's content. `seq` and `prev` are
    then those of the last row given."""

    def __init__(
        self,
        seq: int,
        prev: str,
        entries: Iterable[LogEntry],
        reasons: Callable[[LogEntry], tuple[str, ...]],
    ) -> None:
        self.seq, self.prev = seq, prev
        self._entries = entries
        self._reasons = reasons

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        shared = SharedKeys()
        for e in self._entries:
            before, after, request, reasons = prepared(e, self._reasons(e), shared)
            self.seq += 1
            prev, link = self.prev, self.prev.encode()
            digest = hashlib.sha256(
                b"".join((link, b"\n", before, link, after, b"%d}" % self.seq))
            ).hexdigest()
            q = e.request
            yield (
                self.seq,
                e.decision_id,
                e.at,
                e.caller,
                e.kind,
                request,
                e.allowed,
                reasons,
                e.policy_version,
                e.data_version,
                prev,
                q["user_id"],
                q["contract_id"],
                digest,
            )
            self.prev = digest


def prepared(
    e: LogEntry, reasons: tuple[str, ...], shared: SharedKeys
) -> tuple[bytes, bytes, str, str]:
    """`content` of the entry as `canonical` writes it, cut around the two values that depend
    on its place in the chain: the bytes up to the value of "prev_hash" and from after it up
    to the value of "seq" (its keys in sorted order, the last three "prev_hash", "reasons"
    and "seq"); then the input and the reasons as stored, canonical JSON serialized once for
    both the hash and the row. The keys it shares with the entry prepared before it
    (`shared`) are not serialized again. Property tests hold the bytes equal to `canonical`'s.
    """
    request = orjson.dumps(e.request, option=orjson.OPT_SORT_KEYS)
    why = orjson.dumps(reasons)
    head, tail = shared.of(e)
    before = b"".join(
        (
            b'{"allowed":true' if e.allowed else b'{"allowed":false',
            head,
            orjson.dumps(e.decision_id),
            b',"input":',
            request,
            tail,
        )
    )
    return before, b'","reasons":' + why + b',"seq":', request.decode(), why.decode()
