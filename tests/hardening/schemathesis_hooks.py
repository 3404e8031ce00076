"""Schemathesis hooks for test_fuzz.py, loaded by `hooks` in schemathesis.toml.

An Idempotency-Key names one request: the API answers a key sent again with another body with
a documented 422 ("Idempotency key reused"), as clients are told. The fuzzer draws keys from a
small space (the coverage phase sends one boundary value with body after body), so it would
reuse keys as no client may, and the 422 would read as a valid request refused. Here each key
keeps to one body: a key already sent with another body is made new, still within its schema
(printable ASCII, at most 255 characters). Keys the schema refuses are sent as drawn.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import schemathesis

HEADER = "Idempotency-Key"
VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_first_body: dict[str, str] = {}
_fresh = itertools.count()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    key = (case.headers or {}).get(HEADER)
    if not isinstance(key, str) or not VALID_KEY.fullmatch(key):
        return
    body = json.dumps(case.body, sort_keys=True, default=repr)
    if _first_body.setdefault(key, body) != body:
        suffix = f"~{next(_fresh)}"
        key = key[: 255 - len(suffix)] + suffix
        case.headers[HEADER] = key
        _first_body[key] = body
