"""How account search terms are made: the same function for storing and for asking."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+")


def account_terms(account_id: str, name: str) -> set[str]:
    """The lowercased account number and every lowercased word of the name."""
    return {account_id.lower(), *WORD.findall(name.lower())}


def query_term(q: str) -> str:
    """The prefix a query asks for (compared with terms case-insensitively)."""
    return q.strip().lower()
