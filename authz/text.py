"""What ids and text may hold, one rule for every way data comes in (HTTP, CLI, library)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable_id(value: str) -> str:
    """Ids are compared and shown to people: no character that hides, reorders or replaces text.

    :raises ValueError: for control and format characters (U+0000, U+202E, U+200B...), line
        and paragraph separators, unassigned code points, and U+FFFD (what undecodable bytes
        become).
    """
    if not value.isprintable() or "\ufffd" in value:
        raise ValueError(
            "must hold printable characters only: no control or format character "
            "(such as U+0000, U+202E or U+200B) and no U+FFFD"
        )
    return value


def no_control(value: str) -> str:
    """Free text may hold no control character (PostgreSQL cannot store U+0000 at all).

    :raises ValueError: naming the rule.
    """
    if CONTROL.search(value):
        raise ValueError("must hold no control character (U+0000 to U+001F, U+007F to U+009F)")
    return value


def no_nul(value: str) -> str:
    """ASPIRE's free text is taken as spelled, tabs and line breaks included, but not U+0000.

    :raises ValueError: naming the rule.
    """
    if "\x00" in value:
        raise ValueError("must not hold U+0000, which the store cannot keep")
    return value


ID_RULE = (
    "1 to 128 printable characters (no control or format character, no U+FFFD), no blanks around"
)
# Ids are ASPIRE's own or the portal's: printable, no surrounding blanks.
Id = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=128,
        pattern=r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    ),
    AfterValidator(printable_id),
    Field(description=ID_RULE),
]
# ASPIRE's free text (account names, emails): as spelled, but never U+0000.
AspireText = Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(no_nul)]
AspireEmail = Annotated[str, StringConstraints(max_length=512), AfterValidator(no_nul)]
# Text of our own callers (batch ids, names): no control character at all.
Label = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_control)]
