"""The hostile-input cases: bodies each endpoint accepts (the templates), and every way
`test_hostile_input.py` spoils them (size, nesting, types, id characters, bytes, the
Content-Type, a key sent twice, a NaN), with the answer each must get."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from authz.config import Settings
from tests.conftest import POLICIES

SOURCE = Settings(database_url="sqlite://", policy_dir=POLICIES).aspire_source
HOLE = "\u2063hole\u2063"  # stands in for the spoiled value until the JSON is written


@dataclass(frozen=True)
class Template:
    """A request the endpoint accepts on the seeded store, and what it answers."""

    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    ids: tuple[str, ...] = ()  # where an id sits, e.g. "contracts.0.parties.0.role_type"
    texts: tuple[str, ...] = ()  # free text, stored as sent
    flags: tuple[str, ...] = ()  # booleans


BATCH: dict[str, Any] = {
    "source": SOURCE,
    "batch_id": "hostile#1",
    "extracted_at": "2026-11-26T10:05:00Z",
    "accounts": [{"account_id": "A9", "name": "Nine Trucking LLC", "email": "ap@nine.example"}],
    "contracts": [
        {
            "contract_id": "C9",
            "private_label": None,
            "state": "active",
            "booked_at": "2026-11-20T15:00:00Z",
            "parties": [{"account_id": "A9", "role_type": "Customer"}],
        }
    ],
}
CHECK = {"user_id": "u1", "action": "view", "contract_id": "C1", "site_id": "default"}
TEMPLATES = {
    "site": Template(
        "PUT",
        "/v1/sites/new-site",
        {"name": "New site", "private_label": "ACME", "payments_enabled": True},
        201,
        ids=("private_label",),
        texts=("name",),
        flags=("payments_enabled",),
    ),
    "user": Template(
        "PUT",
        "/v1/users/u2",
        {"site_id": "default", "email": "u2@example.com", "status": "active"},
        201,
        ids=("site_id",),
        texts=("email",),
    ),
    "link": Template(
        "POST", "/v1/users/u1/accounts", {"account_id": "A2"}, 201, ids=("account_id",)
    ),
    "batch": Template(
        "POST",
        "/v1/aspire/batches",
        BATCH,
        200,
        ids=(
            "source",
            "accounts.0.account_id",
            "contracts.0.contract_id",
            "contracts.0.private_label",
            "contracts.0.parties.0.role_type",
        ),
        texts=("batch_id", "accounts.0.name", "accounts.0.email"),
    ),
    "check": Template("POST", "/v1/check", CHECK, 200, ids=("user_id", "contract_id", "site_id")),
    "check-batch": Template(
        "POST",
        "/v1/check/batch",
        {"checks": [{**CHECK, "correlation_id": "r-1"}]},
        200,
        ids=("checks.0.user_id", "checks.0.contract_id"),
        texts=("checks.0.correlation_id",),
    ),
    "explain": Template("POST", "/v1/explain", CHECK, 200, ids=("user_id", "contract_id")),
}
# Write endpoints with ids in the path: (name, template whose body goes along, path, field).
PATHS = [
    ("site", "site", "/v1/sites/{}", "site_id"),
    ("user", "user", "/v1/users/{}", "user_id"),
    ("link", "link", "/v1/users/{}/accounts", "user_id"),
    ("unlink", None, "/v1/users/{}/accounts/A1", "user_id"),
    ("unlink", None, "/v1/users/u1/accounts/{}", "account_id"),
]
# Spoiled values for an id, as raw JSON text (bytes where the point is the bytes).
BAD_IDS: dict[str, bytes] = {
    "int": b"42",
    "array": b'["C1"]',
    "object": b'{"id": "C1"}',
    "boolean": b"true",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "NUL": b'"C\\u00001"',
    "control character": b'"C\\u001b[31m1"',
    "DEL": b'"C\\u007f1"',
    "RTL override U+202E": b'"C\\u202e1"',
    "zero-width space U+200B": b'"C\\u200b1"',
    "line separator U+2028": b'"C\\u20281"',
    "replacement character U+FFFD": b'"C\\ufffd1"',
    "blank around": b'" C1"',
    "empty": b'""',
    "10 KB": json.dumps("C" * 10_240).encode(),
    "nested 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
}
# These break the JSON itself, so the error names the body rather than the field.
BAD_JSON_IDS: dict[str, bytes] = {
    "lone surrogate \\ud800": b'"C\\ud8001"',
    "lone surrogate \\udc00": b'"C\\udc001"',
    "non-UTF-8 bytes": b'"C\xff\xfe1"',
    "overlong UTF-8 NUL": b'"C\xc0\x801"',
    "raw NUL byte": b'"C\x001"',
}
BAD_FLAGS: dict[str, bytes] = {
    "string 'true'": b'"true"',
    "int 1": b"1",
    "null": b"null",
    "NaN": b"NaN",
}
BAD_TEXTS: dict[str, bytes] = {
    "NUL": b'"New\\u0000text"',
    "int": b"7",
    "array": b'["text"]',
    "10 KB": json.dumps("t" * 10_240).encode(),
}
BAD_PATH_IDS = {
    "NUL": "u%00",
    "control character": "u%1B",
    "RTL override U+202E": "u%E2%80%AE",
    "zero-width space U+200B": "u%E2%80%8B",
    "non-UTF-8 byte": "u%FF",
    "encoded lone surrogate": "u%ED%A0%80",
    "blank around": "%20u",
    "10 KB": "u" * 10_240,
}
# Decision lists and the decision log: hostile query strings and path ids.
LIST_QUERIES: list[tuple[str, str | None]] = [
    ("/v1/sites/default/eligible-accounts?q=A%00", "q"),
    ("/v1/sites/default/eligible-accounts?q=A%1B", "q"),
    ("/v1/sites/default/eligible-accounts?limit=abc", "limit"),
    ("/v1/sites/default/eligible-accounts?limit=-1", "limit"),
    ("/v1/sites/default/eligible-accounts?limit=NaN", "limit"),
    ("/v1/sites/default/eligible-accounts?limit=1e999", "limit"),
    ("/v1/sites/default/eligible-accounts?cursor=%00", "cursor"),
    ("/v1/sites/default/eligible-accounts?cursor=" + "x" * 2000, "cursor"),
    ("/v1/sites/default/eligible-accounts?unknown=1", "unknown"),
    ("/v1/sites/u%E2%80%AE/eligible-accounts", "site_id"),
    ("/v1/users/u1/contracts?state=open", "state"),
    ("/v1/users/u1/contracts?action=fly", None),
    ("/v1/users/u1/contracts?action=view%00", None),
    ("/v1/users/u%00/contracts", "user_id"),
    ("/v1/users/u%E2%80%8B/contracts", "user_id"),
    ("/v1/users/u%FF/contracts", "user_id"),
    ("/v1/decisions?user_id=u%E2%80%AE", "user_id"),
    ("/v1/decisions?contract_id=C%00", "contract_id"),
    ("/v1/decisions?since=yesterday", "since"),
    ("/v1/decisions?since=2026-11-26T10:00:00", "since"),  # no offset: ambiguous
]
WRONG_TYPES = ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes | None
    status: int
    field: str | None = None  # the field the problem's `errors` must name
    content_type: str | None = "application/json"


def _field(where: str) -> str:
    """ "checks.0.user_id" as the service names it: "checks[0].user_id"."""
    out = ""
    for part in where.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _put(body: dict[str, Any], where: str, raw: bytes) -> bytes:
    """The body as JSON, with the raw JSON text `raw` as the value at `where`."""
    doc = copy.deepcopy(body)
    *parents, last = where.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = HOLE
    return json.dumps(doc).encode().replace(json.dumps(HOLE).encode(), raw)


def cases() -> Iterator[Any]:
    for name, t in TEMPLATES.items():
        assert t.body is not None
        valid = json.dumps(t.body).encode()

        def case(
            what: str, body: bytes | None, status: int, t: Template = t, name: str = name, **kw: Any
        ) -> Any:
            return pytest.param(Case(t.method, t.path, body, status, **kw), id=f"{name}: {what}")

        for where in t.ids:
            for what, raw in BAD_IDS.items():
                # Nesting past the parser's limit fails the whole document, not the field.
                field = "body" if what.startswith("nested") else _field(where)
                yield case(f"{where} {what}", _put(t.body, where, raw), 400, field=field)
            for what, raw in BAD_JSON_IDS.items():
                yield case(f"{where} {what}", _put(t.body, where, raw), 400, field="body")
        for where in t.texts:
            for what, raw in BAD_TEXTS.items():
                yield case(f"{where} {what}", _put(t.body, where, raw), 400, field=_field(where))
        for where in t.flags:
            for what, raw in BAD_FLAGS.items():
                yield case(f"{where} {what}", _put(t.body, where, raw), 400, field=_field(where))
        first = next(iter(t.body))
        twice = b'{"%s": %s, ' % (first.encode(), json.dumps(t.body[first]).encode())
        yield case(f"key '{first}' twice", twice + valid[1:], 400, field="body")
        # The same key, once spelled with an escape: equal once decoded, unequal as bytes.
        escaped = first[:-1].encode() + b"\\u%04x" % ord(first[-1])
        twice = b'{"%s": %s, ' % (escaped, json.dumps(t.body[first]).encode())
        yield case(f"key '{first}' twice, once escaped", twice + valid[1:], 400, field="body")
        yield case("object nested 10,000 deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400)
        yield case("array nested 10,000 deep", b"[" * 10_000 + b"]" * 10_000, 400)
        yield case("empty body", b"", 400)
        yield case("null body", b"null", 400)
        yield case("UTF-8 BOM", b"\xef\xbb\xbf" + valid, 400)
        yield case("UTF-16", json.dumps(t.body).encode("utf-16"), 400)
        yield case("NaN body", b"NaN", 400)
        yield case("over the size limit", valid, 413)  # padded to the limit by the test
        for ct in WRONG_TYPES:
            yield case(f"Content-Type {ct}", valid, 415, content_type=ct)
    for name, template, path, field in PATHS:
        sent = TEMPLATES[template] if template else None
        method = sent.method if sent else "DELETE"
        body = json.dumps(sent.body).encode() if sent else None
        for what, bad in BAD_PATH_IDS.items():
            yield pytest.param(
                Case(method, path.format(bad), body, 400, field=field),
                id=f"{name} path {field}: {what}",
            )
    for query, named in LIST_QUERIES:
        yield pytest.param(Case("GET", query, None, 400, named, None), id=f"GET {query[:70]}")
