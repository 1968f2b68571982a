"""The names shared with the policy and the HTTP contract, as string enums."""

from enum import StrEnum


class Action(StrEnum):
    """What an end user may ask to do on a contract (declared in the policy as `action/1`)."""

    VIEW = "view"
    VIEW_DOCUMENTS = "view_documents"
    MAKE_PAYMENT = "make_payment"
    MANAGE_AUTOPAY = "manage_autopay"
    REQUEST_PAYOFF_QUOTE = "request_payoff_quote"
    SUBMIT_SERVICE_REQUEST = "submit_service_request"


class ReasonCode(StrEnum):
    """Why a decision was denied; each is named by a `condition/3` of the policy."""

    USER_NOT_FOUND = "USER_NOT_FOUND"
    USER_DISABLED = "USER_DISABLED"
    SITE_MISMATCH = "SITE_MISMATCH"
    CONTRACT_NOT_FOUND = "CONTRACT_NOT_FOUND"
    CONTRACT_NOT_BOOKED = "CONTRACT_NOT_BOOKED"
    CONTRACT_CLOSED = "CONTRACT_CLOSED"
    NO_LINKED_PARTY_ROLE = "NO_LINKED_PARTY_ROLE"
    PRIVATE_LABEL_MISMATCH = "PRIVATE_LABEL_MISMATCH"
    PAYMENTS_DISABLED = "PAYMENTS_DISABLED"


class LinkReasonCode(StrEnum):
    """Why an account may not be linked; each is named by a `link_condition/2` of the policy."""

    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    NO_ACTIVE_PARTY_ROLE = "NO_ACTIVE_PARTY_ROLE"
    PRIVATE_LABEL_MISMATCH = "PRIVATE_LABEL_MISMATCH"


class ContractState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    CLOSED = "closed"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class Scope(StrEnum):
    """What an API key may call."""

    DECIDE = "decide"
    MANAGE = "manage"
    SYNC = "sync"
    AUDIT = "audit"
