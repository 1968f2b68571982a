"""API keys for the portal's services: only a hash of each secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from authz.db import Database
from authz.enums import Scope
from authz.errors import FieldError, InvalidInput, NotFound, Refused
from authz.models import ApiKey

PREFIX = "azk"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name and what it may do."""

    name: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class KeyInfo:
    name: str
    key_id: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


def parse_scopes(text: str) -> frozenset[Scope]:
    """Scopes from `decide,manage`; `all` means every scope.

    :raises InvalidInput: naming the unknown scopes.
    """
    names = {s.strip() for s in text.split(",") if s.strip()}
    if names == {"all"}:
        return frozenset(Scope)
    valid = {s.value for s in Scope}
    unknown = sorted(names - valid)
    if unknown or not names:
        raise InvalidInput(
            "unknown scopes",
            [FieldError("scopes", f"unknown {unknown}; valid: {', '.join(sorted(valid))}")],
        )
    return frozenset(Scope(n) for n in names)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))


def _hash(secret: str) -> str:
    # The secret is 256 random bits, so a plain digest is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys:
    """Creates, lists, revokes and authenticates API keys."""

    def __init__(self, db: Database, cache_seconds: float = 2.0) -> None:
        """Keys found valid are remembered for `cache_seconds`: a key revoked elsewhere (another
        worker, the CLI) is refused at most that long after; in this process, at once."""
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Caller]] = {}

    def create(self, name: str, scopes: frozenset[Scope], now: datetime) -> str:
        """Create a key and return its full text, shown only this once.

        :raises Refused: `KEY_NAME_TAKEN` when the name is in use.
        """
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.db.write() as session:
            if session.scalar(select(ApiKey.key_id).where(ApiKey.name == name)) is not None:
                raise Refused("KEY_NAME_TAKEN", f"a key named '{name}' exists already")
            session.add(
                ApiKey(
                    key_id=key_id,
                    name=name,
                    secret_hash=_hash(secret),
                    scopes=",".join(sorted(str(s) for s in scopes)),
                    created_at=now,
                )
            )
        return f"{PREFIX}_{key_id}_{secret}"

    def list(self) -> list[KeyInfo]:
        with self.db.read() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name))
            return [
                KeyInfo(k.name, k.key_id, k.scopes.split(","), k.created_at, k.revoked_at)
                for k in rows
            ]

    def revoke(self, name: str, now: datetime) -> None:
        """:raises NotFound: `KEY_NOT_FOUND` when no live key has that name."""
        with self.db.write() as session:
            done = _rowcount(
                session.execute(
                    update(ApiKey)
                    .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            )
            if not done:
                raise NotFound(f"no live key named '{name}'", "KEY_NOT_FOUND")
        self._cache.clear()

    def authenticate(self, presented: str) -> Caller | None:
        """The caller for a presented key, or None when it is unknown, malformed or revoked."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        _, key_id, secret = parts
        digest = _hash(secret)
        cached = self._cache.get(key_id + digest)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        with self.db.read() as session:
            key = session.get(ApiKey, key_id)
            if key is None or key.revoked_at is not None:
                return None
            if not hmac.compare_digest(key.secret_hash, digest):
                return None
            caller = Caller(key.name, frozenset(Scope(s) for s in key.scopes.split(",")))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_id + digest] = (time.monotonic(), caller)
        return caller
