"""Issue 6.6: abusive requests against a real uvicorn process, its memory watched.

- 10,000 (and 100,000) nested JSON arrays or objects: a 400/422 problem, not a 500 or a crash;
- a 100 MB body streamed without Content-Length: refused with 413 while it streams in, the
  process's resident memory barely moves, and the upload is cut off long before 100 MB;
- a declared 100 MB Content-Length: refused before a byte of the body is sent;
- a 1 MiB header block or query string: refused with 431 (the 64 KiB head limit of
  `python -m app`), memory again bounded;
and the service answers normally afterwards. Each refusal is an answer the client can read,
even when the server closes the connection while the client is still sending.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.servers import ADMIN_TOKEN, UvicornServer

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
MIB = 1024 * 1024
MAX_BODY = 1 * MIB
HUNDRED_MB = 100 * 1000 * 1000
# What the process may grow by while it refuses an abusive request: far below what holding the
# request would take (100 MB), above what allocator noise and a warm-up can account for.
RSS_HEADROOM = 32 * MIB


@dataclass
class Exchange:
    status: int | None  # None: the server closed the connection without an answer (a failure)
    head: bytes
    sent: int  # bytes of the body (or header block) the server took before it stopped us
    peak_rss: int


def nested(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(nested(10_000), id="10k-arrays"),
        pytest.param(nested(100_000), id="100k-arrays"),
        pytest.param('{"a":' * 10_000 + "1" + "}" * 10_000, id="10k-objects"),
        pytest.param(
            '{"customer": ' + nested(10_000) + ', "item": "x", "unit_price": "1"}',
            id="10k-arrays-in-a-field",
        ),
        pytest.param(
            '{"purchases": [' + nested(10_000, '{"x":', "}").replace("}", "1}", 1) + "]}",
            id="10k-objects-in-a-batch",
        ),
    ],
)
def test_deeply_nested_json_is_a_client_error(module_server: UvicornServer, body: str) -> None:
    before = module_server.rss_bytes()
    path = f"{URL}/batch" if body.startswith('{"purchases"') else URL
    response = httpx.post(
        module_server.base_url + path,
        content=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code in (400, 422), response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    assert module_server.rss_bytes() - before < RSS_HEADROOM
    assert httpx.get(module_server.base_url + "/healthz", timeout=5).status_code == 200


def test_a_100_mb_streamed_body_is_refused_while_it_streams(
    module_server: UvicornServer,
) -> None:
    before = module_server.rss_bytes()

    exchange = post_streaming(module_server, URL, HUNDRED_MB)

    assert exchange.status == 413, exchange.head
    assert b"application/problem+json" in exchange.head.lower(), exchange.head
    # Refused while streaming: the server stopped reading long before the end (kernel socket
    # buffers on both sides account for a few MiB past the limit).
    assert exchange.sent < 16 * MIB, f"the server read {exchange.sent} bytes of the body"
    assert exchange.peak_rss - before < RSS_HEADROOM, (before, exchange.peak_rss)
    assert httpx.get(module_server.base_url + "/healthz", timeout=5).status_code == 200


def test_a_declared_100_mb_body_is_refused_before_it_is_sent(
    module_server: UvicornServer,
) -> None:
    with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {HUNDRED_MB}\r\n\r\n".encode()
        )
        head = read_head(sock, within=10)

    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"application/problem+json" in head.lower()


def test_a_body_just_over_the_limit_is_refused_and_one_at_the_limit_is_read(
    module_server: UvicornServer,
) -> None:
    over = post_streaming(module_server, URL, MAX_BODY + 1, chunk=64 * 1024)
    assert over.status == 413, over.head

    # At the limit the body is read whole and judged on its content (not valid JSON here).
    at_limit = httpx.post(
        module_server.base_url + URL,
        content=b" " * (MAX_BODY - 2) + b"{}",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert at_limit.status_code == 422, at_limit.text[:300]


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-Filler-%04d: %s\r\n" % (n, b"a" * 8000) for n in range(128))
            + b"\r\n",
            id="1MiB-of-headers",
        ),
        pytest.param(
            b"GET /api/v1/customers?email=" + b"a" * MIB + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nAuthorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n",
            id="1MiB-query-string",
        ),
    ],
)
def test_a_one_mib_request_head_is_refused_with_memory_bounded(
    module_server: UvicornServer, request_head: bytes
) -> None:
    """The head limit: a request head of 1 MiB is refused with 431, not read whole and served."""
    before = module_server.rss_bytes()
    peak = before
    head = b""
    with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as sock:
        try:
            for start in range(0, len(request_head), 64 * 1024):
                sock.sendall(request_head[start : start + 64 * 1024])
                peak = max(peak, module_server.rss_bytes())
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we sent: the answer is read below all the same
        head = read_head(sock, within=10)

    assert parse_status(head) == 431, head[:300]
    assert b"application/problem+json" in head.lower(), head
    assert peak - before < RSS_HEADROOM
    assert httpx.get(module_server.base_url + "/healthz", timeout=5).status_code == 200


# --- raw HTTP/1.1 on a socket, to stream as an attacker would --------------------------------


def post_streaming(
    server: UvicornServer, path: str, total: int, chunk: int = 256 * 1024
) -> Exchange:
    """POSTs `total` bytes with chunked transfer encoding, reading the answer as it comes; stops
    at the first answer or when the server closes the connection."""
    peak = server.rss_bytes()
    sent = 0
    head = b""
    data = b" " * chunk  # JSON whitespace: valid as far as it goes
    frame = f"{chunk:x}\r\n".encode() + data + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        deadline = time.monotonic() + 60
        try:
            while sent < total and time.monotonic() < deadline:
                readable, writable, _ = select.select([sock], [sock], [], 5)
                if readable:
                    head = read_head(sock, within=5)
                    break
                if writable:
                    piece = frame if total - sent >= chunk else _last_frame(total - sent)
                    sock.sendall(piece)
                    sent += min(chunk, total - sent)
                    if sent % (4 * MIB) < chunk:
                        peak = max(peak, server.rss_bytes())
            else:
                if sent >= total:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we sent: the answer is read below all the same
        if not head:
            head = read_head(sock, within=10)
    peak = max(peak, server.rss_bytes())
    return Exchange(parse_status(head), head, sent, peak)


def _last_frame(size: int) -> bytes:
    return f"{size:x}\r\n".encode() + b" " * size + b"\r\n"


def read_head(sock: socket.socket, within: float) -> bytes:
    """The status line and headers of the answer (b"" if the connection closed first)."""
    sock.settimeout(within)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except (ConnectionResetError, TimeoutError):
        pass
    return data.partition(b"\r\n\r\n")[0]


def parse_status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None
