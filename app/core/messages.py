"""How a validation error reads, the same in the API's problem details and in the import's
reject file (kept apart from app.core.errors, which is FastAPI's, so the import loads no web code).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Plainer words than Pydantic's defaults for the errors people meet most; others keep its text.
FRIENDLY_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "decimal_max_places": "at most {decimal_places} decimal places",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "too_short": "needs at least {min_length} entries",
    "too_long": "takes at most {max_length} entries",
}


def friendly_message(error: Mapping[str, Any]) -> str:
    """One Pydantic error's message in the plainer words above, else Pydantic's own."""
    template = FRIENDLY_MESSAGES.get(str(error.get("type")))
    if template is not None:
        try:
            return template.format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")
