"""The YAML format of policy fixture suites (documented in policies/tests/README.md)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteFx(_Strict):
    site_id: str
    name: str = ""
    private_label: str | None = None
    payments_enabled: bool = True


class AccountFx(_Strict):
    account_id: str
    name: str = ""


class PartyFx(_Strict):
    account_id: str
    role_type: str


class ContractFx(_Strict):
    contract_id: str
    private_label: str | None = None
    state: str
    parties: list[PartyFx] = Field(default_factory=list)


class UserFx(_Strict):
    user_id: str
    site_id: str
    status: str = "active"
    email: str = ""
    accounts: list[str] = Field(default_factory=list)


class WorldFx(_Strict):
    sites: list[SiteFx]
    accounts: list[AccountFx] = Field(default_factory=list)
    contracts: list[ContractFx] = Field(default_factory=list)
    users: list[UserFx] = Field(default_factory=list)
    # Applied by a later sync, after the users' accounts are linked (e.g. a contract closing).
    later_contracts: list[ContractFx] = Field(default_factory=list)


class ExpectFx(_Strict):
    user: str
    contract: str
    site: str | None = None
    allow: list[str] = Field(default_factory=list)
    reasons: dict[str, list[str]] = Field(default_factory=dict)
    note: str = ""


class LinkFx(_Strict):
    """Would linking `account` to `user` be accepted now (an existing link is)?"""

    user: str
    account: str
    allowed: bool
    reasons: list[str] = Field(default_factory=list)
    note: str = ""


class ListFx(_Strict):
    """The whole expected list: a user's contracts for an action, or a site's eligible accounts."""

    user: str | None = None
    action: str = "view"
    contracts: list[str] | None = None
    site: str | None = None
    eligible_accounts: list[str] | None = None
    note: str = ""


class Suite(_Strict):
    description: str
    world: WorldFx
    expect: list[ExpectFx] = Field(default_factory=list)
    links: list[LinkFx] = Field(default_factory=list)
    lists: list[ListFx] = Field(default_factory=list)


def load_suite(path: Path) -> Suite:
    """:raises ValueError: when the file is not a valid suite."""
    return Suite.model_validate(yaml.safe_load(path.read_text()))


def suite_paths(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        found.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return found
