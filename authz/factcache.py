"""Decision facts remembered for one policy version and one data version.

A decision's facts change only when the store's data version does, and every writer bumps
it in the transaction that changes the replica (`authz.state.bump_data_version`). So the
facts of a (user, site, contract) read at version V stay right while the store is at V:
a warm decision confirms the version with one cheap statement (`VersionProbe`), or on
PostgreSQL from what it was told of every change (`authz.watch`), and reads nothing else.
Facts of any other version are never used; a newer version forgets them all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from authz.policy import Facts, FrozenFacts, freeze

# (user_id, site_id, contract_id): the site changes the user's facts (R5).
Key = tuple[str, str | None, str]

# Forget everything past this many entries; at about 1 KB each, 50 MB at most.
MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class DecisionInput:
    """What the policy is given for one (user, site, contract), whatever the action; with
    the facts frozen once, as the policy remembers its answers by them."""

    user: Facts
    contract: Facts
    frozen: tuple[FrozenFacts, FrozenFacts] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frozen", (freeze(self.user), freeze(self.contract)))


class FactsCache:
    """The inputs of decisions at the newest (policy version, data version) seen.

    Thread-safe without a lock on the read path: the held generation is one tuple, swapped
    whole, and each generation's dict only ever gains entries of its own version. Whoever
    answers from a generation first reads the store's version and finds it equal.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._held: tuple[tuple[str, int], dict[Key, DecisionInput]] = (("", -1), {})
        self._swap = threading.Lock()

    def held(self) -> tuple[tuple[str, int], dict[Key, DecisionInput]]:
        """The generation held now: its (policy version, data version) and its entries."""
        return self._held

    def at(self, policy_version: str, data_version: int) -> dict[Key, DecisionInput]:
        """The entries of this generation, to read and to add to; any other generation is
        forgotten. An older version than the held one replaces it too: a slower thread's
        read costs the others a read, and a store put back to an older state (restored from
        a backup) is not answered from. A read of the held version confirms every answer.
        """
        wanted = (policy_version, data_version)
        with self._swap:
            held, entries = self._held
            if held != wanted or len(entries) >= self.max_entries:
                entries = {}
                self._held = (wanted, entries)
            return entries

    def clear(self) -> None:
        with self._swap:
            self._held = (("", -1), {})
