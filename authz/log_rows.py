"""A decision log entry as a stored row: its columns, the canonical bytes its hash covers,
and the rows of entries chained one after another (`authz.audit` writes them; how they are
read back and verified is `authz.audit_trail`). Also the journal line of a worker that hands
its journal over (`staged_line`): the entry with its canonical bytes made already, so that
the log writer, which stores every worker's entries one after another, does not parse and
serialize each again (`Staged`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from authz.journal import Segment
from authz.log_entry import LogEntry, entry_of_line

log = logging.getLogger("authz.audit")

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
        entries: Iterable[LogEntry | Staged],
        reasons: Callable[[Any], tuple[str, ...]],
    ) -> None:
        self.seq, self.prev = seq, prev
        self._entries = entries
        self._reasons = reasons

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        shared = SharedKeys()
        for e in self._entries:
            if isinstance(e, Staged):
                why = orjson.dumps(self._reasons(e))
                before, request, reasons = e.before, e.request, why.decode()
                after = b'","reasons":' + why + b',"seq":'
                user_id, contract_id = e.user_id, e.contract_id
            else:
                before, after, request, reasons = prepared(e, self._reasons(e), shared)
                user_id, contract_id = e.request["user_id"], e.request["contract_id"]
            self.seq += 1
            prev, link = self.prev, self.prev.encode()
            digest = hashlib.sha256(
                b"".join((link, b"\n", before, link, after, b"%d}" % self.seq))
            ).hexdigest()
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
                user_id,
                contract_id,
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
    before, request = before_prev_hash(e, shared)
    why = orjson.dumps(reasons)
    return before, b'","reasons":' + why + b',"seq":', request.decode(), why.decode()


def before_prev_hash(e: LogEntry, shared: SharedKeys) -> tuple[bytes, bytes]:
    """`content` of the entry as `canonical` writes it, up to the value of "prev_hash"; and
    its input as stored, canonical JSON."""
    request = orjson.dumps(e.request, option=orjson.OPT_SORT_KEYS)
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
    return before, request


# The first value of a `staged_line`: a line of the journal's first form is an object.
STAGED = 2
# Between the parts of a `staged_line`. JSON as orjson writes it holds no raw tab (nor
# newline): inside strings they are escaped, and it puts no whitespace between values.
TAB = b"\t"


def staged_line(e: LogEntry, shared: SharedKeys) -> bytes:
    """The entry as one journal line for a log writer, four parts between tabs: a JSON
    array of its stored values; its canonical bytes up to "prev_hash" (`before_prev_hash`),
    the input as stored among them; and, for a deny whose reasons are to be worked out, the
    JSON of the user's and the contract's facts it was decided on (the writer looks the
    reasons up by that text, and parses it only when it has not seen it), else nothing.
    Made of parts rather than one JSON text, nothing in it is escaped or parsed twice."""
    before, request = before_prev_hash(e, shared)
    start = len(before) - len(shared.of(e)[1]) - len(request)
    facts = e.reasons is None and not e.allowed
    q = e.request
    head = orjson.dumps(
        [
            STAGED,
            e.decision_id,
            e.at,
            e.caller,
            e.kind,
            e.allowed,
            e.policy_version,
            e.data_version,
            q["user_id"],
            q["contract_id"],
            q["action"],
            e.reasons,
            start,
            len(request),
        ]
    )
    if not facts:
        return b"".join((head, TAB, before, TAB, TAB, b"\n"))
    user, contract = orjson.dumps(e.user), orjson.dumps(e.contract)
    return b"".join((head, TAB, before, TAB, user, TAB, contract, b"\n"))


@dataclass(slots=True)
class Staged:
    """An entry as a `staged_line` holds it."""

    decision_id: str
    at: datetime
    caller: str
    kind: str
    allowed: bool
    policy_version: str
    data_version: int
    user_id: str
    contract_id: str
    action: str
    reasons: tuple[str, ...] | None
    before: bytes
    request: str
    user: bytes | None  # the facts, as JSON
    contract: bytes | None


def entries_of(segment: Segment) -> list[LogEntry | Staged]:
    """The entries of a claimed segment, of either form; a line that is not one is logged
    and skipped."""
    entries: list[LogEntry | Staged] = []
    times: dict[str, datetime] = {}  # a batch's entries share their time: parsed once
    for line in segment.lines():
        try:
            if not line.startswith(b"["):
                entries.append(entry_of_line(line))
                continue
            head, before, user, contract = line.split(TAB)
            v = orjson.loads(head)
            if v[0] != STAGED:
                raise ValueError(f"a line of an unknown form ({v[0]!r})")
            at = times.get(v[2])
            if at is None:
                at = times[v[2]] = datetime.fromisoformat(v[2])
            entries.append(
                Staged(
                    v[1],
                    at,
                    v[3],
                    v[4],
                    v[5],
                    v[6],
                    v[7],
                    v[8],
                    v[9],
                    v[10],
                    None if v[11] is None else tuple(v[11]),
                    before,
                    before[v[12] : v[12] + v[13]].decode(),
                    user or None,
                    contract or None,
                )
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("skipped a line of %s that is not an entry: %s", segment.path.name, exc)
    return entries


@dataclass
class Gathered:
    """Claimed segments, and the entries of theirs the store lacks, to be written together."""

    group: list[tuple[Segment, int]] = field(default_factory=list)  # each with its entries
    pending: list[LogEntry | Staged] = field(default_factory=list)
    looked_up: bool = True  # whether `pending` was checked against the store entry by entry
    since: float = 0.0  # when the first segment was gathered (time.monotonic)

    @property
    def paths(self) -> set[Path]:
        return {segment.path for segment, _ in self.group}

    def keep(self) -> None:
        """Let go of the segments, unwritten: they are claimed again later."""
        for segment, _ in self.group:
            segment.keep()
        self.group, self.pending = [], []
