"""What a decision leaves for the decision log (`LogEntry`), and its form in the journal.

`authz.audit` writes entries to the store and re-exports these names; `authz.journal` keeps
the lines on disk until the store holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from authz.policy import Facts, FrozenFacts


@dataclass(slots=True)  # not frozen: see `authz.decisions.Decision`
class LogEntry:
    """What a decision leaves for the log; reasons may be worked out later from the facts."""

    decision_id: str
    at: datetime
    caller: str
    kind: str  # check, batch or explain
    request: dict[str, Any]
    allowed: bool
    policy_version: str
    data_version: int
    reasons: tuple[str, ...] | None = None
    user: Facts | None = None
    contract: Facts | None = None
    frozen: tuple[FrozenFacts, FrozenFacts] | None = None  # the facts as the policy keys them


def journal_line(e: LogEntry) -> bytes:
    """The entry as one line of the journal: what `_write` needs, the facts only of a deny
    (its reasons are worked out from them)."""
    facts = e.reasons is None and not e.allowed
    return (
        orjson.dumps(
            {
                "decision_id": e.decision_id,
                "at": e.at,
                "caller": e.caller,
                "kind": e.kind,
                "request": e.request,
                "allowed": e.allowed,
                "policy_version": e.policy_version,
                "data_version": e.data_version,
                "reasons": e.reasons,
                "user": e.user if facts else None,
                "contract": e.contract if facts else None,
            }
        )
        + b"\n"
    )


def entry_of_line(line: bytes) -> LogEntry:
    """The entry a `journal_line` holds.

    :raises ValueError: when the line is not one.
    """
    d = orjson.loads(line)
    return LogEntry(
        decision_id=d["decision_id"],
        at=datetime.fromisoformat(d["at"]),
        caller=d["caller"],
        kind=d["kind"],
        request=d["request"],
        allowed=d["allowed"],
        policy_version=d["policy_version"],
        data_version=d["data_version"],
        reasons=None if d["reasons"] is None else tuple(d["reasons"]),
        user=d["user"],
        contract=d["contract"],
    )
