"""The bearer check in front of every guarded route: `require(Scope.READ)` as a dependency.

Errors follow RFC 6750: no credentials or another scheme is a 401 with a bare
`WWW-Authenticate: Bearer`; a malformed, oversized or repeated Authorization header a 400
(`invalid_request`); an unknown, revoked or expired key a 401 (`invalid_token`); a key without
the scope a 403 (`insufficient_scope`) naming it. No message repeats what was sent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from app.core.errors import AppError, Unauthorized
from app.keys.schemas import Scope
from app.keys.service import Authenticator, InvalidKey, Principal

log = structlog.get_logger(__name__)

# The bootstrap APP_ADMIN_TOKEN's name in the audit trail and in retry keys' scopes.
ADMIN_TOKEN_CREDENTIAL = "admin-token"  # noqa: S105  (a label, not a secret)
# Longer than any secret this service issues (44) or a sensible bootstrap token; a header
# beyond it is refused before it is hashed or looked up.
MAX_TOKEN_CHARS = 256
# RFC 6750's b64token.
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")

# Declares the scheme in the OpenAPI document (Swagger's "Authorize"); the header itself is
# parsed by `_bearer_token`, which also sees a repeated header.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key (`pcs_...`) or the bootstrap APP_ADMIN_TOKEN.",
)


class InvalidToken(AppError):
    status = 401
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "The bearer token is not valid: unknown, revoked or expired.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class MalformedAuthorization(AppError):
    status = 400
    title = "Malformed Authorization header"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_request"'})


class MissingScope(AppError):
    status = 403
    title = "Forbidden"

    def __init__(self, scope: Scope) -> None:
        super().__init__(
            f"This API key lacks the '{scope.value}' scope.",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope.value}"'
            },
        )


def _bearer_token(request: Request) -> str:
    values = request.headers.getlist("authorization")
    if not values:
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    if len(values) > 1:
        raise MalformedAuthorization("Send one Authorization header, not several.")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("Only the Bearer scheme is accepted: 'Authorization: Bearer <key>'.")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise MalformedAuthorization(
            f"The bearer token is longer than {MAX_TOKEN_CHARS} characters."
        )
    if not _B64TOKEN.match(token):
        raise MalformedAuthorization(
            "The bearer token is empty or holds characters a token cannot."
        )
    return token


async def authenticate(request: Request) -> Principal:
    """The caller's principal, or the 4xx that says what is wrong with its credentials."""
    token = _bearer_token(request)
    authenticator: Authenticator = request.app.state.authenticator
    try:
        return await authenticator.authenticate(request.app.state.database.engine, token)
    except InvalidKey:
        raise InvalidToken() from None


def credential_name(principal: Principal) -> str:
    """How a credential is named where it is recorded (the audit trail, a retry key's scope):
    never the secret, `key:<id>` for an API key."""
    return ADMIN_TOKEN_CREDENTIAL if principal.key_id is None else f"key:{principal.key_id}"


async def credential_id(request: Request) -> str | None:
    """Who sent a request to a public endpoint: None without an Authorization header, else the
    name of its (valid) credential; an invalid one is refused as on any other endpoint rather
    than taken for none."""
    if "authorization" not in request.headers:
        return None
    return credential_name(await authenticate(request))


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers whose key has `scope`; it returns their principal."""

    async def check(
        request: Request, _declared: Annotated[object, Depends(bearer_scheme)]
    ) -> Principal:
        principal = await authenticate(request)
        if scope.value not in principal.scopes:
            log.info("api key lacks scope", key_id=principal.key_id, scope=scope.value)
            raise MissingScope(scope)
        return principal

    return check
