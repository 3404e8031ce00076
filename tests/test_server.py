"""`python -m app`'s HTTP protocol: httptools with a bound on the request head (app.core.server).

A real process on SQLite, spoken to over raw sockets as a client (or an attacker) would:
- ordinary requests, pipelined ones, and a head that arrives with a large body are served;
- a head of exactly MAX_HEAD_BYTES is served, one byte more is refused with 431;
- 1 MiB heads (many headers, one header, the URL) are refused at once, and the process's peak
  resident memory (VmHWM, reset before each) does not grow by anything like their size;
- `--http h11` still works, with the same bound; `--workers 2` loads the protocol too.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.__main__ import HTTP_PROTOCOL, uvicorn_args
from app.core.server import MAX_HEAD_BYTES
from tests.servers import UvicornServer, app_env, migrate

MIB = 1024 * 1024
# How much the server's peak memory may grow while it refuses a 1 MiB head: well under 1 MiB
# (plain httptools grows by about twice the head), above allocator noise.
PEAK_HEADROOM = 512 * 1024
REFUSED_WITHIN_S = 2.0


# --- the command line ------------------------------------------------------------------------


def test_the_bounded_httptools_protocol_is_the_default() -> None:
    assert uvicorn_args(["--port", "9000"]) == [
        "app.main:app",
        "--http",
        "app.core.server:BoundedHttpToolsProtocol",
        "--port",
        "9000",
        "--no-proxy-headers",
    ]
    assert HTTP_PROTOCOL == "app.core.server:BoundedHttpToolsProtocol"
    # --http2 is another option: the default protocol still applies.
    assert uvicorn_args(["--http2"])[1:3] == ["--http", HTTP_PROTOCOL]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--http", "h11"], ["--h11-max-incomplete-event-size", "65536", "--http", "h11"]),
        (["--http=h11"], ["--h11-max-incomplete-event-size", "65536", "--http=h11"]),
        (
            ["--http", "h11", "--h11-max-incomplete-event-size", "8192"],
            ["--http", "h11", "--h11-max-incomplete-event-size", "8192"],
        ),
        (["--http", "httptools"], ["--http", "httptools"]),
        (["--http=auto", "--workers", "2"], ["--http=auto", "--workers", "2"]),
    ],
)
def test_an_explicit_http_option_is_kept(options: list[str], expected: list[str]) -> None:
    """h11 gets the same bound unless one is given; any other choice is the user's."""
    assert uvicorn_args(options) == ["app.main:app", *expected, "--no-proxy-headers"]


@pytest.mark.parametrize(
    "option", ["--proxy-headers", "--no-proxy-headers", "--forwarded-allow-ips=10.0.0.1"]
)
def test_uvicorn_believes_x_forwarded_for_only_when_told(option: str) -> None:
    """By default only the app does, from APP_TRUSTED_PROXIES; an explicit option is kept."""
    assert uvicorn_args([option]) == ["app.main:app", "--http", HTTP_PROTOCOL, option]


# --- the protocol, in a real process ----------------------------------------------------------


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'app.sqlite'}"
    migrate(url)
    return url


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UvicornServer]:
    """`python -m app` with its default protocol, shared by this module's tests."""
    with UvicornServer(app_env(database_url), tmp_path_factory.mktemp("server")) as running:
        yield running


def request_head(path: bytes = b"/healthz", *headers: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(headers) + b"\r\n"


def padded_head(size: int) -> bytes:
    """A GET /healthz head of exactly `size` bytes, padded by one header; the last request."""
    close = b"Connection: close\r\n"
    bare = len(request_head(b"/healthz", close, b"X-Pad: \r\n"))
    return request_head(b"/healthz", close, b"X-Pad: " + b"p" * (size - bare) + b"\r\n")


def exchange(server: UvicornServer, data: bytes, piece: int = 64 * 1024) -> bytes:
    """Sends `data` in pieces on one connection, then reads until the server closes it (or
    2 s of silence); what the server answered. A server that refuses early may reset the
    connection while we still send: what it answered before is kept."""
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for start in range(0, len(data), piece):
                sock.sendall(data[start : start + piece])
        sock.settimeout(2)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while part := sock.recv(65536):
                answer += part
    return answer


def statuses(answer: bytes) -> list[int]:
    """The status codes of the responses in `answer`, in order (one may follow another's body
    directly: our bodies are short JSON)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def reset_peak_rss(pid: int) -> int:
    """Resets the process's peak resident memory (VmHWM) to its current one, and returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return proc_status(pid, "VmHWM")


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def assert_serves(server: UvicornServer) -> None:
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def test_a_request_is_served(server: UvicornServer) -> None:
    answer = exchange(server, request_head(b"/healthz", b"Connection: close\r\n"))
    assert statuses(answer) == [200]
    assert answer.endswith(b'{"status":"ok"}'), answer[-200:]


@pytest.mark.parametrize("piece", [MIB, 1000, 7001], ids=["one-send", "1000-byte-sends", "7001"])
def test_a_head_at_the_bound_is_served_and_one_byte_more_is_refused(
    server: UvicornServer, piece: int
) -> None:
    assert statuses(exchange(server, padded_head(MAX_HEAD_BYTES), piece)) == [200]
    assert statuses(exchange(server, padded_head(MAX_HEAD_BYTES + 1), piece)) == [431]


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            request_head(
                b"/healthz", *(b"X-Filler-%04d: %s\r\n" % (n, b"a" * 8000) for n in range(128))
            ),
            id="128-headers-of-8000-bytes",
        ),
        pytest.param(
            request_head(b"/healthz", b"X-Big: " + b"a" * MIB + b"\r\n"), id="one-1MiB-header"
        ),
        pytest.param(request_head(b"/healthz?q=" + b"a" * MIB), id="1MiB-url"),
    ],
)
def test_a_one_mib_head_is_refused_at_once_without_being_held(
    server: UvicornServer, head: bytes
) -> None:
    before = reset_peak_rss(server.pid)
    started = time.monotonic()

    answer = exchange(server, head)

    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert statuses(answer) == [431], answer[:300]
    response_head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in response_head
    assert b"connection: close" in response_head
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
    }
    grown = proc_status(server.pid, "VmHWM") - before
    assert grown < PEAK_HEADROOM, f"peak memory grew by {grown} bytes"
    assert_serves(server)


def test_pipelined_requests_are_served_in_order(server: UvicornServer) -> None:
    """Two requests in one send; the second's head, begun in the read that ended the first,
    is measured once it ends: 60 KiB passes."""
    answer = exchange(server, request_head() + padded_head(60 * 1024), piece=MIB)
    assert statuses(answer) == [200, 200]


@pytest.mark.parametrize("size", [100 * 1024, MIB], ids=["100KiB", "1MiB"])
def test_a_pipelined_oversized_head_is_refused_after_the_answer_before_it(
    server: UvicornServer, size: int
) -> None:
    """The second head begins in the read that ends the first request, which is not answered
    yet: the first gets its 200, then the second its 431, and the connection is closed."""
    answer = exchange(server, request_head() + padded_head(size), piece=MIB)

    assert statuses(answer) == [200, 431], answer[:300]
    assert_serves(server)


def test_a_head_sent_with_a_large_body_is_served(server: UvicornServer) -> None:
    """Head and body in one send: the parser gets the head's room first, then the rest."""
    purchase = {
        "customer": {"email": "bounded@example.com", "name": "Bounded"},
        "item": "x",
        "unit_price": "1.00",
    }
    body = json.dumps(purchase).encode() + b" " * (300 * 1024)
    head = (
        b"POST /api/v1/purchases HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )

    answer = exchange(server, head + body, piece=MIB)

    assert statuses(answer) == [201], answer[:500]


def chunked_capture(*trailers: bytes) -> bytes:
    """A POST of one purchase in one chunk, then the last chunk with these trailer fields."""
    body = json.dumps(
        {"customer": {"email": "chunked@example.com", "name": "C"}, "item": "x", "unit_price": "1"}
    ).encode()
    head = (
        b"POST /api/v1/purchases HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + b"%x\r\n%s\r\n0\r\n" % (len(body), body) + b"".join(trailers) + b"\r\n"


def test_a_chunked_request_with_trailers_is_served(server: UvicornServer) -> None:
    answer = exchange(server, chunked_capture(b"X-Checksum: abc\r\n", b"X-Other: 1\r\n"))

    assert statuses(answer) == [201], answer[:500]


@pytest.mark.parametrize("piece", [MIB, 1000], ids=["one-send", "1000-byte-sends"])
@pytest.mark.parametrize(
    "trailers",
    [
        pytest.param((b"X-Big: " + b"a" * MIB + b"\r\n",), id="one-1MiB-trailer"),
        pytest.param(
            tuple(b"X-Filler-%04d: %s\r\n" % (n, b"a" * 8000) for n in range(128)),
            id="128-trailers-of-8000-bytes",
        ),
    ],
)
def test_one_mib_of_trailers_is_refused_at_once_without_being_held(
    server: UvicornServer, trailers: tuple[bytes, ...], piece: int
) -> None:
    """Trailers count toward the head's bound: refused as a head of that size would be."""
    before = reset_peak_rss(server.pid)
    started = time.monotonic()

    answer = exchange(server, chunked_capture(*trailers), piece)

    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert statuses(answer) == [431], answer[:300]
    grown = proc_status(server.pid, "VmHWM") - before
    assert grown < PEAK_HEADROOM, f"peak memory grew by {grown} bytes"
    assert_serves(server)


def test_h11_on_request_keeps_a_bound(database_url: str, tmp_path: Path) -> None:
    """h11 bounds what it holds of a head that has not ended (a whole head in one read passes)."""
    with UvicornServer(app_env(database_url), tmp_path, extra_args=["--http", "h11"]) as h11:
        assert statuses(exchange(h11, padded_head(MAX_HEAD_BYTES))) == [200]
        assert statuses(exchange(h11, padded_head(MIB))) == [400]
        assert_serves(h11)


def test_worker_processes_load_the_protocol(database_url: str, tmp_path: Path) -> None:
    with UvicornServer(app_env(database_url), tmp_path, workers=2) as workers:
        assert statuses(exchange(workers, padded_head(MAX_HEAD_BYTES))) == [200]
        assert statuses(exchange(workers, padded_head(MAX_HEAD_BYTES + 1))) == [431]
        assert_serves(workers)
