"""Wire schemas of API v1, in one place: they validate requests and make the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from authz import replica, text
from authz.decisions import MAX_BATCH
from authz.enums import Action, ReasonCode
from authz.text import no_control

Id = text.Id
Email = Annotated[
    str,
    StringConstraints(min_length=3, max_length=512, pattern=r"^[^@\s]+@[^@\s]+$"),
    AfterValidator(no_control),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_control)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Decisions ---------------------------------------------------------------------------------


MinDataVersion = Annotated[
    int | None,
    Field(
        ge=0,
        le=2**62,
        description=(
            "a consistency token: the data_version a write answered. The answer comes from data"
            " at least this new, or is a 503 DATA_VERSION_NOT_REACHED, never older"
        ),
    ),
]


class CheckFields(In):
    user_id: Id
    # The policy's action list is authoritative; the enum documents it (a test keeps them equal).
    action: Annotated[str, Field(json_schema_extra={"enum": [a.value for a in Action]})]
    contract_id: Id
    site_id: Id | None = None


class CheckIn(CheckFields):
    min_data_version: MinDataVersion = None


class BatchItemIn(CheckFields):
    correlation_id: (
        Annotated[str, StringConstraints(max_length=256), AfterValidator(no_control)] | None
    ) = None


class CheckBatchIn(In):
    checks: Annotated[list[BatchItemIn], Field(min_length=1, max_length=MAX_BATCH)]
    min_data_version: MinDataVersion = None


class CheckOut(Out):
    allowed: bool
    decision_id: str
    policy_version: str
    data_version: int


class BatchItemOut(CheckOut):
    correlation_id: str | None


class CheckBatchOut(Out):
    results: list[BatchItemOut]


class ConditionOut(Out):
    name: str
    passed: bool
    detail: str


class ReasonOut(Out):
    code: Annotated[str, Field(json_schema_extra={"enum": [c.value for c in ReasonCode]})]
    message: str


class ExplainOut(CheckOut):
    conditions: list[ConditionOut]
    reasons: list[ReasonOut]


# Lists -------------------------------------------------------------------------------------


class Query(BaseModel):
    """Query strings: values arrive as text, so numbers are parsed (not strict)."""

    model_config = ConfigDict(extra="forbid")
    limit: Annotated[int, Field(ge=1, description="at most 1000; a larger value is clamped")] = 100
    cursor: Annotated[str, StringConstraints(max_length=1024)] | None = None


class ContractsQuery(Query):
    action: Annotated[str, Field(json_schema_extra={"enum": [a.value for a in Action]})] = "view"
    state: Literal["active", "closed"] | None = None
    min_data_version: MinDataVersion = None


class AccountsQuery(Query):
    q: Annotated[str, StringConstraints(max_length=128), AfterValidator(no_control)] | None = None
    min_data_version: MinDataVersion = None


class ListedContractOut(Out):
    contract_id: str
    state: str
    private_label: str | None
    roles: list[str]


class ContractsOut(Out):
    contracts: list[ListedContractOut]
    next_cursor: str | None


class ListedAccountOut(Out):
    account_id: str
    name: str


class AccountsOut(Out):
    accounts: list[ListedAccountOut]
    next_cursor: str | None


# Audit -------------------------------------------------------------------------------------


class PolicyFileOut(Out):
    path: str
    sha256: str
    source: str


class PolicyOut(Out):
    policy_version: str
    files: list[PolicyFileOut]


class DecisionsQuery(Query):
    user_id: Id | None = None
    contract_id: Id | None = None
    since: AwareDatetime | None = None


class DecisionOut(Out):
    decision_id: str
    at: datetime
    caller: str
    kind: str
    input: dict[str, str | None]
    allowed: bool
    reasons: list[str]
    policy_version: str
    data_version: int


class DecisionsOut(Out):
    decisions: list[DecisionOut]
    next_cursor: str | None


# Sites, users, links -----------------------------------------------------------------------


class SiteIn(In):
    name: Name
    private_label: Id | None = None
    payments_enabled: bool = True


class SiteOut(Out):
    site_id: str
    name: str
    private_label: str | None
    payments_enabled: bool


class SiteWriteOut(SiteOut):
    data_version: int


class SitesOut(Out):
    sites: list[SiteOut]


class UserIn(In):
    site_id: Id
    email: Email
    status: Literal["active", "disabled"] = "active"


class LinkedAccountOut(Out):
    account_id: str
    name: str
    linked_at: datetime


class UserOut(Out):
    user_id: str
    site_id: str
    email: str
    status: str
    linked_accounts: list[LinkedAccountOut]


class UserWriteOut(UserOut):
    data_version: int


class LinkIn(In):
    account_id: Id


class LinkOut(LinkedAccountOut):
    user_id: str
    data_version: int


# ASPIRE replica ----------------------------------------------------------------------------
# The library's batch model: the same rules for a batch sent over HTTP or by `authz sync`.
BatchIn = replica.BatchIn


class BatchCountsOut(Out):
    accounts: int
    contracts: int
    stale: int


class BatchOut(Out):
    batch_id: str
    applied: bool
    data_version: int
    counts: BatchCountsOut


class SyncStatusOut(Out):
    source: str
    last_batch_id: str | None
    last_synced_at: datetime | None
    extracted_at: datetime | None
    age_seconds: float | None
    data_version: int


# Errors and operations ---------------------------------------------------------------------


class FieldErrorOut(Out):
    field: str
    message: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldErrorOut] | None = None
    reasons: list[dict[str, str]] | None = None


class HealthOut(Out):
    status: str


class ReadyOut(HealthOut):
    policy_version: str
