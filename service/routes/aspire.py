"""The ASPIRE replica: sync batches (scope `sync`) and its status (any scope)."""

from __future__ import annotations

import os

from flask import Blueprint, Response

from authz.decisions import utcnow
from authz.enums import Scope
from service import schemas as s
from service.api import RouteSpec, answer, route, runtime

bp = Blueprint("aspire", __name__)
MAX_BATCH_BYTES = int(os.environ.get("AUTHZ_MAX_SYNC_BYTES", 64 * 1024 * 1024))


@bp.post("/v1/aspire/batches")
@route(
    RouteSpec(
        "Apply one ASPIRE extract, whole or not at all",
        (Scope.SYNC,),
        s.BatchIn,
        {200: s.BatchOut, 422: None},
        max_bytes=MAX_BATCH_BYTES,
    )
)
def apply_batch(body: s.BatchIn) -> Response:
    r = runtime().replica.apply(body, utcnow())
    counts = s.BatchCountsOut(accounts=r.accounts, contracts=r.contracts, stale=r.stale)
    return answer(
        s.BatchOut(
            batch_id=r.batch_id, applied=r.applied, data_version=r.data_version, counts=counts
        )
    )


@bp.get("/v1/aspire/status")
@route(RouteSpec("How fresh the replica is", (), responses={200: s.SyncStatusOut}))
def status() -> Response:
    st = runtime().replica.status()
    f = st.freshness
    return answer(
        s.SyncStatusOut(
            source=st.source,
            last_batch_id=f.last_batch_id,
            last_synced_at=f.last_synced_at,
            extracted_at=f.extracted_at,
            age_seconds=f.age_seconds(utcnow()),
            data_version=f.data_version,
        )
    )
