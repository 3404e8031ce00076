"""What the service's routes ask of a caller, in API key scopes (app.keys does the checking).

Reads of stored customer data (purchases, customers, audit, stats) need `read`; corrections and
erasure need `write`, and the audit trail records which credential made them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.keys.auth import credential_name, require
from app.keys.schemas import Scope
from app.keys.service import Principal

require_read = require(Scope.READ)


async def write_credential(
    principal: Annotated[Principal, Depends(require(Scope.WRITE))],
) -> str:
    """The `write` check, answering which credential passed: what the audit trail records."""
    return credential_name(principal)


CredentialDep = Annotated[str, Depends(write_credential)]
