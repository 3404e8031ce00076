"""Key management over HTTP, for callers holding the `admin` scope."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request

from app.core.errors import AppError, problem_responses
from app.keys import service
from app.keys.auth import require
from app.keys.repository import KeyRow
from app.keys.schemas import CreatedKey, KeyIn, KeyList, KeyOut, Scope

MAX_ID = 2**63 - 1
# Declared so that a client sending one is told why it is refused (400), not ignored.
RefusedIdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Refused with 400: keys are not replayed."),
]

keys = APIRouter(prefix="/api/v1/keys", tags=["keys"], dependencies=[Depends(require(Scope.ADMIN))])


def key_out(row: KeyRow) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=sorted(Scope(scope) for scope in row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


@keys.post(
    "",
    status_code=201,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
    summary="Create a key; its secret is in this response only",
)
async def create_key(
    data: KeyIn, request: Request, idempotency_key: RefusedIdempotencyKey = None
) -> CreatedKey:
    if idempotency_key is not None:
        raise AppError(
            "Key creation takes no Idempotency-Key: a replay would need the secret kept, and "
            "only its hash is. Create the key again if the answer was lost (and revoke the "
            "first, listed by its name)."
        )
    row, secret = await service.create_key(
        request.app.state.database.engine,
        name=data.name,
        scopes=frozenset(data.scopes),
        lifetime=timedelta(days=data.expires_in_days) if data.expires_in_days else None,
    )
    return CreatedKey(**key_out(row).model_dump(), secret=secret)


@keys.get(
    "", responses=problem_responses(400, 401, 403, 503), summary="Every key, revoked ones too"
)
async def list_keys(request: Request) -> KeyList:
    rows = await service.list_keys(request.app.state.database.engine)
    return KeyList(items=[key_out(row) for row in rows])


@keys.delete(
    "/{key_id}",
    responses=problem_responses(400, 401, 403, 404, 422, 503),
    summary="Revoke a key: refused by every process within seconds",
)
async def revoke_key(key_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request) -> KeyOut:
    return key_out(await service.revoke_key(request.app.state.database.engine, key_id=key_id))
