"""Sites, users and their linked accounts (scope `manage`)."""

from __future__ import annotations

from flask import Response

from authz.decisions import utcnow
from authz.directory import SiteView, UserView
from authz.enums import Scope
from service import schemas as s
from service.api import RouteSpec, answer, route, runtime
from service.paths import id_routes

bp = id_routes("directory", __name__)
MANAGE = (Scope.MANAGE,)


def _site(site: SiteView) -> dict[str, object]:
    return {
        "site_id": site.site_id,
        "name": site.name,
        "private_label": site.private_label,
        "payments_enabled": site.payments_enabled,
    }


def _user(user: UserView) -> dict[str, object]:
    return {
        "user_id": user.user_id,
        "site_id": user.site_id,
        "email": user.email,
        "status": user.status,
        "linked_accounts": [
            s.LinkedAccountOut(account_id=a.account_id, name=a.name, linked_at=a.linked_at)
            for a in user.linked_accounts
        ],
    }


@bp.put("/v1/sites/<id:site_id>")
@route(
    RouteSpec(
        "Create or replace a site", MANAGE, s.SiteIn, {200: s.SiteWriteOut, 201: s.SiteWriteOut}
    )
)
def put_site(site_id: str, body: s.SiteIn) -> Response:
    written = runtime().directory.put_site(
        site_id, body.name, body.private_label, body.payments_enabled, utcnow()
    )
    out = s.SiteWriteOut(**_site(written.value), data_version=written.data_version)
    return answer(out, 201 if written.created else 200)


@bp.get("/v1/sites")
@route(RouteSpec("Every site", MANAGE, responses={200: s.SitesOut}))
def list_sites() -> Response:
    sites = [s.SiteOut(**_site(x)) for x in runtime().directory.sites()]
    return answer(s.SitesOut(sites=sites))


@bp.put("/v1/users/<id:user_id>")
@route(
    RouteSpec(
        "Create or replace an end user",
        MANAGE,
        s.UserIn,
        {200: s.UserWriteOut, 201: s.UserWriteOut, 422: None},
    )
)
def put_user(user_id: str, body: s.UserIn) -> Response:
    written = runtime().directory.put_user(user_id, body.site_id, body.email, body.status, utcnow())
    out = s.UserWriteOut(**_user(written.value), data_version=written.data_version)
    return answer(out, 201 if written.created else 200)


@bp.get("/v1/users/<id:user_id>")
@route(
    RouteSpec(
        "An end user with their linked accounts", MANAGE, responses={200: s.UserOut, 404: None}
    )
)
def get_user(user_id: str) -> Response:
    return answer(s.UserOut(**_user(runtime().directory.get_user(user_id))))


@bp.post("/v1/users/<id:user_id>/accounts")
@route(
    RouteSpec(
        "Link an ASPIRE account to a user, if the policy's R7 allows it",
        MANAGE,
        s.LinkIn,
        {200: s.LinkOut, 201: s.LinkOut, 404: None, 422: None},
    )
)
def link(user_id: str, body: s.LinkIn) -> Response:
    written = runtime().directory.link(user_id, body.account_id, utcnow())
    a = written.value
    out = s.LinkOut(
        user_id=user_id,
        account_id=a.account_id,
        name=a.name,
        linked_at=a.linked_at,
        data_version=written.data_version,
    )
    return answer(out, 201 if written.created else 200)


@bp.delete("/v1/users/<id:user_id>/accounts/<id:account_id>")
@route(RouteSpec("Unlink an account from a user", MANAGE, responses={204: None, 404: None}))
def unlink(user_id: str, account_id: str) -> Response:
    version = runtime().directory.unlink(user_id, account_id)
    return Response(status=204, headers={"X-Data-Version": str(version)})
