"""POST /v1/creatives (multipart or JSON), /v1/creatives/batch, GET /v1/creatives/{id}, retry, image, DELETE."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from ctax.api.deps import BlobsDep, DbDep, Poster, SettingsDep
from ctax.api.params import CreativeId, Offset, ShortText
from ctax.api.routes.accounts import AccountFilter
from ctax.api.routes.creative_input import BATCH_SCHEMA, CREATIVE_SCHEMA, MULTIPART_SCHEMA, read_submissions
from ctax.api.throttle import RATE_LIMITED, Allowance, Spend, Throttle, ThrottleDep
from ctax.api.views.creatives import Accepted, BatchAccepted, accepted, creative_view
from ctax.config import Settings
from ctax.creatives import intake, removal
from ctax.enums import CreativeStatus, Flag, Role
from ctax.errors import Forbidden, NotFound
from ctax.store import keys
from ctax.store.blobs import BlobStore
from ctax.store.models import ApiKey, Creative
from ctax.store.repos import creatives as creative_rows
from ctax.store.repos import review as review_rows
from ctax.store.session import Database

# What refuses a well-formed post beyond the usual 401/403/422: the account's rate (429) or its quota (403).
POST_REFUSALS: dict[int | str, dict[str, Any]] = {
    **RATE_LIMITED, 403: {"description": "quota_exceeded: the account holds as many creatives as its quota allows "
                                         "(or the key may not post)"}}

router = APIRouter(prefix="/v1/creatives", tags=["creatives"])


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    responses=POST_REFUSALS,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
                "application/json": {"schema": CREATIVE_SCHEMA},
            },
            "required": True,
        }
    },
)
async def post_creative(
    request: Request,
    response: Response,
    key: Poster,
    db: DbDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Accepted:
    """Accept a creative (an image, its text, or both) and answer at once; labelling happens in the worker."""
    [(creative, created)] = await _accept(request, response, key, db, blobs, settings, throttle, idempotency_key,
                                          batch=False)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return accepted(creative, created)


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchAccepted,
    responses=POST_REFUSALS,
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": BATCH_SCHEMA}}, "required": True}
    },
)
async def post_batch(
    request: Request,
    response: Response,
    key: Poster,
    db: DbDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> BatchAccepted:
    """Accept many creatives in one request: all of them or, if any is invalid or over the account's rate limit,
    none."""
    results = await _accept(request, response, key, db, blobs, settings, throttle, idempotency_key, batch=True)
    return BatchAccepted(items=[accepted(creative, created) for creative, created in results])


def _quota(key: ApiKey, settings: Settings) -> int | None:
    """The creatives the key's account may hold (None: no quota), as the key was read with its account (a change
    reaches other API processes within CTAX_KEY_CACHE_S)."""
    if key.account is None:
        return None
    quota, _ = settings.for_account("quota", "creatives", key.account.quotas)
    return None if quota is None else int(quota)


async def _accept(request: Request, response: Response, key: ApiKey, db: Database, blobs: BlobStore,
                  settings: Settings, throttle: Throttle, idempotency_key: str | None,
                  batch: bool) -> list[tuple[Creative, bool]]:
    """The request's creatives stored and paid for from the account's budget (docs/reliability.md, "Rate limits"):
    an account already out of it is refused before its body is read, a post that does not parse pays nothing, one
    refused for its content pays for what it sent. A post with an Idempotency-Key pays once `intake.plan` has read
    its replays (and the quota's count), from its thread, only for what it adds: a client retrying after a lost
    answer pays once, and a refusal by the quota found there pays nothing. Any other post pays before it is
    handed to a thread, quota refusals included: the trip back to the event loop (5-9% of posts a second,
    bench.load) and the early read of the quota's count (a fifth of a quota'd account's, bench.quotas) are a
    price only keyed posts pay, which read their replays anyway (2-8%)."""
    await throttle.take(Spend.CREATIVES, key, only_test=True)
    subs = await read_submissions(request, idempotency_key, settings, batch=batch)
    quota = _quota(key, settings)
    if not any(sub.idempotency_key for sub in subs):
        _pay(await throttle.take(Spend.CREATIVES, key, len(subs)), response)
        return await run_in_threadpool(intake.submit, db, blobs, settings, subs, key.id, key.account_id, quota)

    def charge(new: int) -> None:
        # Back to the event loop, where the budget's storage lives, the request's thread held meanwhile. A post
        # that is all replay takes nothing and is told what is left, as any accepted post is.
        if new:
            _pay(anyio.from_thread.run(throttle.take, Spend.CREATIVES, key, new), response)
        else:
            _pay(anyio.from_thread.run(throttle.left, Spend.CREATIVES, key), response)

    return await run_in_threadpool(intake.submit, db, blobs, settings, subs, key.id, key.account_id, quota, charge)


def _pay(allowance: Allowance | None, response: Response) -> None:
    if allowance is not None:
        allowance.write(response)


@router.get("/{creative_id}")
def get_creative(creative_id: CreativeId, key: Poster, db: DbDep) -> dict[str, Any]:
    """A poster sees its own account's creatives; another account's id answers 404, as an unknown one does."""
    with db.read() as session:
        creative = intake.get_creative(session, creative_id, keys.account_scope(session, key))
        return creative_view(creative, review_rows.item_of_creative(session, creative.duplicate_of or creative.id))


@router.get("")
def list_creatives(
    key: Poster,
    db: DbDep,
    status: CreativeStatus | None = None,
    flag: Flag | None = None,
    external_id: Annotated[ShortText | None, Query()] = None,
    campaign: Annotated[ShortText | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
    account_id: AccountFilter = None,
) -> dict[str, Any]:
    """Newest first: a poster's own account's; everyone's (or one account's) for reviewers and admins; filtered by
    status, flag, external id or campaign."""
    with db.read() as session:
        rows, total = creative_rows.page(
            session, status=status, flag=flag, external_id=external_id, limit=limit, offset=offset,
            account_id=keys.account_scope(session, key, account_id), campaign=campaign,
        )
        return {"items": [creative_view(c) for c in rows], "total": total, "limit": limit, "offset": offset}


@router.post("/{creative_id}/retry", status_code=202, response_model=Accepted)
def retry_creative(creative_id: CreativeId, key: Poster, db: DbDep) -> Accepted:
    with db.write() as session:
        creative = intake.retry(session, intake.get_creative(session, creative_id, keys.account_scope(session, key)))
        return accepted(creative, False)


@router.get("/{creative_id}/image", responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}})
def get_image(creative_id: CreativeId, key: Poster, db: DbDep, blobs: BlobsDep) -> Response:
    with db.read() as session:
        creative = intake.get_creative(session, creative_id, keys.account_scope(session, key))
    if not creative.image_sha256:
        raise NotFound(f"creative {creative_id} has no image")
    return Response(
        blobs.get(creative.image_sha256),
        media_type=creative.image_mime or "application/octet-stream",
        headers={"Cache-Control": "private, max-age=86400"},
    )


@router.delete("/{creative_id}", responses={409: {"description": "a worker is labelling it right now"}})
def delete_creative(creative_id: CreativeId, key: Poster, db: DbDep, blobs: BlobsDep,
                    settings: SettingsDep) -> dict[str, Any]:
    """Delete a creative: its poster's account or an admin (reviewers decide creatives, they do not delete them).
    It is gone at once from every answer, from labelled data and the review queue; its image and its points in the
    index follow within seconds. 409 while a worker labels it (a moment)."""
    if key.role == Role.REVIEWER:
        raise Forbidden("reviewers do not delete creatives: the posting account or an admin does")
    with db.write() as session:
        removed = removal.remove(session, creative_id, keys.account_scope(session, key), settings.lease_s)
    removal.discard_image(db, blobs, removed)
    return {"id": removed.creative_id, "deleted": True, "group_handed_to": removed.group_handed_to}
