"""Lists that agree with the policy (scope `decide`)."""

from __future__ import annotations

from flask import Response

from authz.enums import Scope
from service import schemas as s
from service.api import RouteSpec, answer, route, runtime
from service.paths import id_routes

bp = id_routes("lists", __name__)
DECIDE = (Scope.DECIDE,)


@bp.get("/v1/users/<id:user_id>/contracts")
@route(
    RouteSpec(
        "The contracts a user may act on, paged",
        DECIDE,
        query=s.ContractsQuery,
        responses={200: s.ContractsOut},
    )
)
def user_contracts(user_id: str, query: s.ContractsQuery) -> Response:
    page = runtime().lister.contracts(
        user_id, query.action, query.state, query.limit, query.cursor, query.min_data_version
    )
    return answer(
        s.ContractsOut(
            contracts=[
                s.ListedContractOut(
                    contract_id=c.contract_id,
                    state=c.state,
                    private_label=c.private_label,
                    roles=list(c.roles),
                )
                for c in page.items
            ],
            next_cursor=page.next_cursor,
        )
    )


@bp.get("/v1/sites/<id:site_id>/eligible-accounts")
@route(
    RouteSpec(
        "The ASPIRE accounts that may be linked to a user of a site, paged",
        DECIDE,
        query=s.AccountsQuery,
        responses={200: s.AccountsOut, 404: None},
    )
)
def eligible_accounts(site_id: str, query: s.AccountsQuery) -> Response:
    page = runtime().lister.eligible_accounts(
        site_id, query.q, query.limit, query.cursor, query.min_data_version
    )
    return answer(
        s.AccountsOut(
            accounts=[s.ListedAccountOut(account_id=a.account_id, name=a.name) for a in page.items],
            next_cursor=page.next_cursor,
        )
    )
