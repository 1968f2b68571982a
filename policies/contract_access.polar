# Contract access policy for the ASPIRE Customer Portal.
#
# This file is the only statement of who may see and act on an ASPIRE contract.
# The service gathers facts from its replica of ASPIRE and asks this policy; it
# never decides on its own. Rule numbers (R1-R7) refer to the product
# specification.
#
# The facts the service hands in:
#   user      - the end user asking, as this service knows them:
#               found, status ("active" or "disabled"), site_id, site_label (the
#               private label mapped to the user's site, nil for "no label"),
#               payments_enabled (the site's payments switch) and via_site (the
#               site the request came through, nil when the caller did not say).
#   contract  - the contract, as seen by that user:
#               found, state ("pending", "active" or "closed"), private_label
#               (nil when none), from_connected_source, and roles: the distinct
#               role types that the user's linked accounts hold on it.
#   account   - for linking (R7): found, and holdings: the distinct
#               (role, state, label) of the contracts the account is a party to.
#   site      - for linking (R7): the site's private_label.


# ---------------------------------------------------------------------------
# Actions. Every action an end user can ask about is declared here, once.
# ---------------------------------------------------------------------------

action("view");
action("view_documents");
action("make_payment");
action("manage_autopay");
action("request_payoff_quote");
action("submit_service_request");

# R6: these actions change or start something on the contract, so the
# contract must still be running (active), not closed.
needs_active_contract("make_payment");
needs_active_contract("manage_autopay");
needs_active_contract("request_payoff_quote");
needs_active_contract("submit_service_request");

# R6: these actions move money, so the site must have payments switched on.
needs_payments("make_payment");
needs_payments("manage_autopay");


# ---------------------------------------------------------------------------
# Party roles (R2).
# ---------------------------------------------------------------------------

# Only these role types on a contract connect a person to it. Any other role
# (Co-Lessee, Vendor, Broker, ...) grants nothing. Role types are compared
# exactly as ASPIRE spells them.
party_role("Customer");
party_role("Guarantor");

# What each party role may do. Customer and Guarantor may do every action.
# To narrow what a Guarantor may do, change only the Guarantor line, e.g.:
#   role_grants("Guarantor", action) if action in ["view", "view_documents"];
role_grants("Customer", action) if action(action);
role_grants("Guarantor", action) if action(action);


# ---------------------------------------------------------------------------
# The named conditions of a decision. Each one is a rule of its own so that
# an explanation can ask the policy which of them failed.
# ---------------------------------------------------------------------------

# The user is known to this service.
user_exists(user, _action, _contract) if user.found = true;

# The contract is held in the replica, and it came from the ASPIRE instance
# this deployment is connected to (R4: data from any other source never counts).
contract_exists(_user, _action, contract) if
    contract.found = true and
    contract.from_connected_source = true;

# R1: only booked contracts (active or closed) are ever visible. Quotes,
# applications and approved deals that are not booked yet (pending) are not.
contract_booked(_user, _action, contract) if contract.state = "active";
contract_booked(_user, _action, contract) if contract.state = "closed";

# R2: one of the user's linked accounts holds a party role on the contract
# that grants this action.
party_role_grants_action(_user, action, contract) if
    role in contract.roles and
    role_grants(role, action);

# R3: a contract shows only on the site mapped to its private label. A site
# mapped to "no private label" sees only contracts that have none.
private_label_matches(user, _action, contract) if
    contract.private_label = user.site_label;

# R5: a disabled user is denied everything.
user_active(user, _action, _contract) if user.status = "active";

# R5: when the caller names the site the request came through, it must be the
# user's own site.
request_from_user_site(user, _action, _contract) if user.via_site = nil;
request_from_user_site(user, _action, _contract) if user.via_site = user.site_id;

# R6: the contract is not closed (checked for actions that need an active contract).
contract_not_closed(_user, _action, contract) if contract.state != "closed";

# R6: the user's site has payments switched on (checked for actions that move money).
payments_enabled(user, _action, _contract) if user.payments_enabled = true;


# ---------------------------------------------------------------------------
# The decision: allowed only when every condition that applies holds.
# ---------------------------------------------------------------------------

allow(user, action, contract) if
    action(action) and
    user_exists(user, action, contract) and
    contract_exists(user, action, contract) and
    contract_booked(user, action, contract) and
    party_role_grants_action(user, action, contract) and
    private_label_matches(user, action, contract) and
    user_active(user, action, contract) and
    request_from_user_site(user, action, contract) and
    (not needs_active_contract(action) or contract_not_closed(user, action, contract)) and
    (not needs_payments(action) or payments_enabled(user, action, contract));


# ---------------------------------------------------------------------------
# How a denial is explained. The conditions above, in the order a support
# person reads them (R1 to R6 after the two existence checks), each with the
# reason code a failure gives and the actions it applies to. A test proves
# that `allow` holds exactly when every applicable condition listed here holds.
# ---------------------------------------------------------------------------

condition("user_exists", "USER_NOT_FOUND", _action);
condition("contract_exists", "CONTRACT_NOT_FOUND", _action);
condition("contract_booked", "CONTRACT_NOT_BOOKED", _action);
condition("party_role_grants_action", "NO_LINKED_PARTY_ROLE", _action);
condition("private_label_matches", "PRIVATE_LABEL_MISMATCH", _action);
condition("user_active", "USER_DISABLED", _action);
condition("request_from_user_site", "SITE_MISMATCH", _action);
condition("contract_not_closed", "CONTRACT_CLOSED", action) if needs_active_contract(action);
condition("payments_enabled", "PAYMENTS_DISABLED", action) if needs_payments(action);

# When the user or the contract is unknown, the other conditions say nothing
# useful: only the missing record is given as the reason.
reported_alone("user_exists");
reported_alone("contract_exists");


# ---------------------------------------------------------------------------
# R7: which ASPIRE accounts may be linked to a user of a site.
# ---------------------------------------------------------------------------

# The replica holds the account.
account_exists(account, _site) if account.found = true;

# The account is Customer or Guarantor on at least one active contract.
holds_active_party_role(account, _site) if
    holding in account.holdings and
    party_role(holding.role) and
    holding.state = "active";

# ... and at least one such contract is under the site's private label.
active_party_role_under_site_label(account, site) if
    holding in account.holdings and
    party_role(holding.role) and
    holding.state = "active" and
    holding.label = site.private_label;

# An account may be linked only when all of the above hold. A link made this
# way stays when those contracts later close: closed contracts stay viewable.
link_eligible(account, site) if
    account_exists(account, site) and
    holds_active_party_role(account, site) and
    active_party_role_under_site_label(account, site);

# The link conditions in order, each narrowing the one before; a refusal gives
# the reason of the first that fails.
link_condition("account_exists", "ACCOUNT_NOT_FOUND");
link_condition("holds_active_party_role", "NO_ACTIVE_PARTY_ROLE");
link_condition("active_party_role_under_site_label", "PRIVATE_LABEL_MISMATCH");
