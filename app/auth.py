"""Bearer-token check guarding every read of stored customer data."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import Unauthorized
from app.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The admin token (APP_ADMIN_TOKEN).")


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    settings: Settings = request.app.state.settings
    if credentials is None:
        raise Unauthorized("Send the admin token as 'Authorization: Bearer <token>'.")
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    # compare_digest keeps the comparison time independent of how much of the token matched.
    if expected is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise Unauthorized("The bearer token is not valid.")


# The name the audit trail records for the bootstrap token: never the secret itself. API keys
# will record their own id here (the one place to change when they land).
ADMIN_TOKEN_CREDENTIAL = "admin-token"  # noqa: S105  (a label, not a secret)


async def admin_credential(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """`require_admin`, answering which credential passed: what the audit trail records."""
    await require_admin(request, credentials)
    return ADMIN_TOKEN_CREDENTIAL


CredentialDep = Annotated[str, Depends(admin_credential)]
