"""Issue 6.6: security headers on every response, and CORS off unless configured.

Against a real uvicorn process: successes, every kind of error the app writes (401, 404, 405,
413, 415, 422, 503 is in test_outage), the purchase page, its static files, the docs and the
spec all carry the hardening headers. CORS: a browser on another origin gets no
Access-Control-* header by default; with APP_CORS_ORIGINS='["https://shop.example"]' that origin
(and only that one) does, preflight included.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.servers import ADMIN_TOKEN, UvicornServer

from .conftest import Serve

pytestmark = pytest.mark.postgres

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
PURCHASE = {
    "customer": {"email": "headers@example.com", "name": "Hed"},
    "item": "book",
    "unit_price": "12.50",
}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORIGIN = "https://shop.example"

# (method, path, keyword arguments for httpx, the status expected)
REQUESTS = [
    ("GET", "/healthz", {}, 200),
    ("GET", "/readyz", {}, 200),
    ("GET", "/", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("POST", "/api/v1/purchases", {"json": PURCHASE}, 201),
    ("GET", "/api/v1/customers", {"headers": AUTH}, 200),
    ("GET", "/api/v1/customers", {}, 401),
    ("GET", "/api/v1/customers/999999", {"headers": AUTH}, 404),
    ("GET", "/no/such/page", {}, 404),
    ("GET", "/static/no-such-file.js", {}, 404),
    ("DELETE", "/api/v1/purchases", {}, 405),
    (
        "POST",
        "/api/v1/purchases",
        {"content": b"x", "headers": {"Content-Type": "text/plain"}},
        415,
    ),
    ("POST", "/api/v1/purchases", {"json": {"item": 1}}, 422),
    (
        "POST",
        "/api/v1/purchases",
        {"content": b"{", "headers": {"Content-Type": "application/json"}},
        400,
    ),
    (
        "POST",
        "/api/v1/purchases",
        {
            "content": b" " * (1024 * 1024 + 1),
            "headers": {"Content-Type": "application/json"},
        },
        413,
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    REQUESTS,
    ids=[f"{status}-{method}-{path}" for method, path, _, status in REQUESTS],
)
def test_every_response_carries_the_security_headers(
    module_server: UvicornServer, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = httpx.request(method, module_server.base_url + path, timeout=10, **kwargs)

    assert response.status_code == status, response.text[:300]
    missing = {
        name: value
        for name, value in SECURITY_HEADERS.items()
        if response.headers.get(name) != value
    }
    assert not missing, f"missing or wrong: {missing}; got {dict(response.headers)}"


def test_static_files_carry_the_security_headers(module_server: UvicornServer) -> None:
    page = httpx.get(module_server.base_url + "/", timeout=10).text
    assets = [part.split('"')[0] for part in page.split('"/static/')[1:]]
    assert assets, "the page links no static file"
    for asset in assets:
        response = httpx.get(f"{module_server.base_url}/static/{asset}", timeout=10)
        assert response.status_code == 200, asset
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (asset, name)


def preflight(base_url: str, origin: str) -> httpx.Response:
    return httpx.options(
        base_url + "/api/v1/purchases",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
        timeout=10,
    )


def test_cors_is_off_by_default(module_server: UvicornServer) -> None:
    response = httpx.post(
        module_server.base_url + "/api/v1/purchases",
        json=PURCHASE,
        headers={"Origin": ORIGIN},
        timeout=10,
    )
    assert response.status_code == 201
    assert not [name for name in response.headers if name.startswith("access-control-")]

    answer = preflight(module_server.base_url, ORIGIN)
    assert "access-control-allow-origin" not in answer.headers
    assert answer.status_code >= 400  # no route answers OPTIONS: the browser will refuse


def test_cors_allows_the_configured_origins_only(database: str, serve: Serve) -> None:
    server = serve(database, cors_origins=json.dumps([ORIGIN]))

    allowed = preflight(server.base_url, ORIGIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    for name, value in SECURITY_HEADERS.items():
        assert allowed.headers.get(name) == value, name

    response = httpx.post(
        server.base_url + "/api/v1/purchases", json=PURCHASE, headers={"Origin": ORIGIN}, timeout=10
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()

    stranger = preflight(server.base_url, "https://evil.example")
    assert stranger.headers.get("access-control-allow-origin") != "https://evil.example"
    other = httpx.post(
        server.base_url + "/api/v1/purchases",
        json=PURCHASE,
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in other.headers
