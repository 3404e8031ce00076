"""Thin HTTP routes: parse, call one service, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from pydantic import AfterValidator
from sqlalchemy import text
from starlette.convertors import StringConvertor, register_url_convertor

from app.core.db import DatabaseDep, ReadConnectionDep
from app.core.errors import problem_responses
from app.core.ratelimit import charge_batch
from app.core.settings import Settings
from app.keys.auth import credential_id
from app.sales.auth import CredentialDep, require_read
from app.sales.idempotency import Captured, RetryKey
from app.sales.schemas import (
    BatchIn,
    BatchOut,
    CapturedPurchase,
    CustomerDetail,
    CustomerPage,
    CustomerPatch,
    Health,
    PurchaseIn,
    PurchaseOut,
    PurchasePage,
)
from app.sales.service import capture as capture_service
from app.sales.service import corrections as correction_service
from app.sales.service import reads as read_service

MAX_ID = 2**63 - 1


class _NotBatch(StringConvertor):
    """Any path segment but "batch": GET /purchases/batch is then a 405 (only POST is served
    there), not a purchase id that fails to parse."""

    regex = "(?!batch$)[^/]+"


register_url_convertor("not_batch", _NotBatch())


# The OpenAPI responses of a route answering these problem statuses (audit and stats use it).
problems = problem_responses


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description=(
            "Retry key, best a random UUID: the same key with the same body replays the first "
            "response (for 24 hours by default) and stores nothing again."
        ),
    ),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]


def _normalise_filter(email: str | None) -> str | None:
    # Stored emails are trimmed and lower-cased, so the filter is too.
    return email.strip().lower() if email is not None else None


# PostgreSQL cannot compare text holding NUL; no stored email has a control character anyway.
EmailFilter = Annotated[
    str | None,
    Query(max_length=320, pattern=r"^[^\x00-\x1f\x7f]*$", description="Exact email."),
    AfterValidator(_normalise_filter),
]
Cursor = Annotated[
    str | None,
    Query(max_length=64, description="`next_cursor` of the previous page."),
]

# Only JSON bodies are read; a body of another media type is a 415 (app.core.errors), not a 422.
capture = APIRouter(prefix="/api/v1", tags=["capture"])
reads = APIRouter(prefix="/api/v1", tags=["reads"], dependencies=[Depends(require_read)])
ops = APIRouter(tags=["operations"])


@capture.post(
    "/purchases",
    status_code=201,
    response_model=CapturedPurchase,
    responses=problems(400, 401, 413, 415, 422, 429, 503),
    summary="Capture a purchase; create or update its customer",
)
async def create_purchase(
    request: Request,
    data: PurchaseIn,
    database: DatabaseDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async with database.connect() as conn:
        captured = await capture_service.capture_purchase(
            conn, data=data, idempotency_key=await _retry_key(request, idempotency_key)
        )
    return _created(captured)


@capture.post(
    "/purchases/batch",
    status_code=201,
    response_model=BatchOut,
    responses=problems(400, 401, 413, 415, 422, 429, 503),
    summary="Capture up to 1000 purchases, all or nothing",
)
async def create_purchases(
    request: Request, data: BatchIn, database: DatabaseDep, idempotency_key: IdempotencyKey = None
) -> Response:
    await charge_batch(request.scope, request.app.state.capture_limiter, len(data.purchases))
    async with database.connect() as conn:
        captured = await capture_service.capture_batch(
            conn, data=data, idempotency_key=await _retry_key(request, idempotency_key)
        )
    # Serialised by the service in one pass: FastAPI would validate the 1000 purchases again.
    return _created(captured)


async def _retry_key(request: Request, key: str | None) -> RetryKey | None:
    """The Idempotency-Key, in the scope of the API key the capture was sent with, if any:
    captures are public, so one without a credential is in the public scope."""
    if key is None:
        return None
    settings: Settings = request.app.state.settings
    credential = await credential_id(request)
    if credential is None:
        return RetryKey(key, ttl=settings.idempotency_key_ttl)
    return RetryKey(key, ttl=settings.idempotency_key_ttl, scope=credential)


def _created(captured: Captured) -> Response:
    headers = {"Idempotent-Replayed": "true"} if captured.replayed else None
    return Response(captured.body, 201, headers=headers, media_type="application/json")


@reads.get("/purchases", responses=problems(400, 401, 403, 422, 503))
async def list_purchases(
    conn: ReadConnectionDep,
    customer_email: EmailFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> PurchasePage:
    return await read_service.list_purchases(
        conn, customer_email=customer_email, cursor=cursor, limit=limit
    )


@reads.get("/purchases/{purchase_id:not_batch}", responses=problems(400, 401, 403, 404, 422, 503))
async def get_purchase(
    conn: ReadConnectionDep, purchase_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> PurchaseOut:
    return await read_service.get_purchase(conn, purchase_id=purchase_id)


EmailPrefix = Annotated[
    str | None,
    Query(
        max_length=320,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Customers whose email starts with this (case-insensitive).",
    ),
    AfterValidator(_normalise_filter),
]


@reads.get("/customers", responses=problems(400, 401, 403, 422, 503))
async def list_customers(
    conn: ReadConnectionDep,
    email: EmailFilter = None,
    email_prefix: EmailPrefix = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CustomerPage:
    return await read_service.list_customers(
        conn, email=email, email_prefix=email_prefix, cursor=cursor, limit=limit
    )


CustomerId = Annotated[int, Path(ge=1, le=MAX_ID)]


@reads.get("/customers/{customer_id}", responses=problems(400, 401, 403, 404, 422, 503))
async def get_customer(
    conn: ReadConnectionDep, customer_id: CustomerId, response: Response
) -> CustomerDetail:
    """The customer with its totals; the `ETag` header is what a correction's `If-Match` wants."""
    customer = await read_service.get_customer(conn, customer_id=customer_id)
    response.headers["ETag"] = correction_service.etag(customer)
    return customer


# --- corrections and erasure (admin credential; each change goes to the audit trail) ---

_IF_MATCH = "The customer's `ETag` as last read (`*`: any version); a stale one is a 412."
IfMatch = Annotated[str, Header(alias="If-Match", max_length=1024, description=_IF_MATCH)]
OptionalIfMatch = Annotated[str | None, Header(alias="If-Match", max_length=1024)]


def _record_change(request: Request) -> correction_service.RecordChange:
    record: correction_service.RecordChange = request.app.state.record_change
    return record


# The credential dependency of each route both guards it and names who made the change.
corrections = APIRouter(prefix="/api/v1", tags=["corrections"])


@corrections.patch(
    "/customers/{customer_id}",
    responses=problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 503),
    summary="Correct a customer's name and/or email (needs If-Match)",
)
async def correct_customer(
    request: Request,
    database: DatabaseDep,
    credential: CredentialDep,
    customer_id: CustomerId,
    patch: Annotated[CustomerPatch, Body()],
    response: Response,
    if_match: IfMatch,
) -> CustomerDetail:
    async with database.connect() as conn:
        customer, tag = await correction_service.correct_customer(
            conn,
            customer_id=customer_id,
            patch=patch,
            if_match=if_match,
            credential=credential,
            record=_record_change(request),
        )
    response.headers["ETag"] = tag
    return customer


@corrections.delete(
    "/customers/{customer_id}",
    status_code=204,
    responses=problems(400, 401, 403, 404, 412, 422, 503),
    summary="Erase a customer: email and name become a tombstone, purchases stay",
)
async def erase_customer(
    request: Request,
    database: DatabaseDep,
    credential: CredentialDep,
    customer_id: CustomerId,
    if_match: OptionalIfMatch = None,
) -> Response:
    async with database.connect() as conn:
        await correction_service.erase_customer(
            conn,
            customer_id=customer_id,
            if_match=if_match,
            credential=credential,
            record=_record_change(request),
        )
    return Response(status_code=204)


@ops.get("/healthz", summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@ops.get("/readyz", summary="The database answers", responses=problems(503))
async def readyz(conn: ReadConnectionDep) -> Health:
    await conn.execute(text("SELECT 1"))
    return Health(status="ready")
