"""The reasons of a deny in the decision log, worked out by the log's writer from the facts
the decision was made on (`authz.audit`), with its own copy of the policy of that version."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from authz.errors import PolicyLoadError
from authz.log_entry import LogEntry
from authz.log_rows import Staged
from authz.policy import MAX_REMEMBERED, Policy

log = logging.getLogger("authz.audit")


class DenialReasons:
    """An entry's reasons: as given, none for an allow, else the policy's for the deny (when
    the facts came with it and its policy, or a frozen copy of it, is at hand)."""

    def __init__(self, policy: Policy, copies: Path | None = None) -> None:
        """`policy` is the one served now; a deny of another version gets its reasons from
        that version's copy in `copies` (see `authz.assurance.freeze`), if there. Not
        thread-safe: oso instances are not shared across threads, so this has its own
        instance of `policy`'s files."""
        self.policy = Policy(policy.files)
        self._copies = copies
        self._others: dict[str, Policy | None] = {}
        self._staged: dict[tuple[str, str, bytes, bytes], tuple[str, ...]] = {}

    def __call__(self, e: LogEntry | Staged) -> tuple[str, ...]:
        if e.reasons is not None or e.allowed:
            return e.reasons or ()
        if e.user is None or e.contract is None:
            return ()
        if isinstance(e, Staged):
            return self._of_staged(e, e.user, e.contract)
        policy = self._policy_of(e.policy_version)
        if policy is None:
            return ()
        return policy.denial_codes(e.user, e.request["action"], e.contract, e.frozen)

    def _of_staged(self, e: Staged, user: bytes, contract: bytes) -> tuple[str, ...]:
        """A staged deny's reasons, looked up by the JSON of its facts: freezing them to
        look them up in the policy's own memory cost more than all else the writer does
        with a deny."""
        key = (e.policy_version, e.action, user, contract)
        found = self._staged.get(key)
        if found is None:
            policy = self._policy_of(e.policy_version)
            if policy is None:
                return ()
            found = policy.denial_codes(orjson.loads(user), e.action, orjson.loads(contract))
            if len(self._staged) >= MAX_REMEMBERED:
                self._staged.clear()
            self._staged[key] = found
        return found

    def _policy_of(self, version: str) -> Policy | None:
        """The policy of that version: the one served, or a frozen copy's (loaded once)."""
        if version == self.policy.version:
            return self.policy
        if self._copies is None:
            return None
        if version not in self._others:
            found = None
            try:
                found = Policy.load(self._copies / version)
            except (PolicyLoadError, OSError) as exc:
                log.error("no copy of policy %s for the reasons of its denies: %s", version, exc)
            if found is not None and found.version != version:
                found = None
            self._others[version] = found
        return self._others[version]
