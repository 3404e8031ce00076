"""uvicorn's httptools protocol with a bound on the request head (request line and headers).

httptools (llhttp) has no limit of its own: it keeps a header that has not ended yet, and
uvicorn the URL, however long they grow, so a client can make the process hold a head of any
size. `BoundedHttpToolsProtocol` feeds the parser at most MAX_HEAD_BYTES of one head; a head
that has not ended within them is answered 431 and the connection closed, before the app sees
it (as uvicorn answers a malformed head with 400). A client that pipelined it behind requests
not yet answered gets those answers first: reading stops, and the 431 follows the last one.
`python -m app` runs this protocol by default (`--http app.core.server:BoundedHttpToolsProtocol`),
as it costs less CPU per request than h11.

Counting: while a head is open (from the end of one message, or the connection's start, to the
end of the next head) every byte fed to the parser counts, so the parser never holds more than
MAX_HEAD_BYTES of a head. One read can also end a message and begin the next (pipelining); that
head's share of the read is not known, so such a head is measured once it ends (request line
and headers as parsed, a lower bound) and refused the same way if it is too large; until then
the parser holds at most that one read (up to 256 KiB) plus MAX_HEAD_BYTES of it.

Trailers (header fields after a chunked body's last, empty chunk) are more head: httptools keeps
each field until it ends, growing it by concatenation, so they count toward the same bound. After
a chunk-size line the next bytes are the chunk's data or, after the last chunk, the trailers: a
read fed to the parser there that yields no data counts whole. The trailers' share of the read
that held the last chunk-size line is not known, so each trailer field is also measured as it
ends, as a pipelined head is. Over the bound the request is answered 431 if its response has not
begun (else the connection is just closed), and the app sees the client gone. The service reads
no trailers, and uvicorn would add them to the request's headers, which the app may have read
already: they are dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

MAX_HEAD_BYTES = 64 * 1024

_STATUS = 431
_REFUSAL_BODY = json.dumps(
    {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": _STATUS,
        "detail": f"The request line and headers exceed {MAX_HEAD_BYTES} bytes.",
    },
    separators=(",", ":"),
).encode()
_REFUSAL_HEADERS = (
    b"content-type: application/problem+json\r\n"
    b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head over MAX_HEAD_BYTES with 431 and closes."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_open = True  # the parser has not reached the end of the next head yet
        self._head_bytes = 0  # bytes of the message's head and trailers fed to the parser
        self._head_uncounted = False  # the head began in a read that ended the message before
        self._message_ended = False  # a message ended in the piece being fed
        self._passed = False  # the piece being fed held more than head or trailer bytes
        self._after_chunk_size = False  # a chunk-size line ended; no chunk data since
        self._trailer_size = 0  # the trailer fields parsed so far, as `_head_size` counts them
        self._refused = False

    def data_received(self, data: bytes) -> None:
        """Feeds uvicorn's parser no more of an open head than the room left under the bound."""
        if self._refused:
            return  # a refused connection waiting for earlier answers: what follows is dropped
        while True:
            piece = data
            bounded = self._head_open or self._after_chunk_size  # a head's or trailers' bytes
            if bounded:
                room = MAX_HEAD_BYTES - self._head_bytes
                if room <= 0:
                    if self._head_open:
                        self._refuse_head()
                    else:
                        self._refuse_trailers()
                    return
                piece = data[:room]  # `data` itself (no copy) when it fits
            self._message_ended = self._passed = False
            super().data_received(piece)
            if bounded and not self._passed:
                self._head_bytes += len(piece)
            if len(piece) == len(data) or self._done_reading():
                return
            data = data[len(piece) :]

    def on_message_begin(self) -> None:
        self._head_uncounted = self._message_ended
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_open:
            super().on_header(name, value)
            return
        self._trailer_size += len(name) + len(value) + 3
        if not self._refused and self._head_size() + self._trailer_size > MAX_HEAD_BYTES:
            self._refuse_trailers()

    def on_headers_complete(self) -> None:
        self._passed = True
        if self._refused:
            return
        self._head_open = False
        if self._head_uncounted and self._head_size() > MAX_HEAD_BYTES:
            self._refuse_head()
            return
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._after_chunk_size = True

    def on_body(self, body: bytes) -> None:
        self._passed = True
        self._after_chunk_size = False
        if not self._refused:
            super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._passed = True
        self._after_chunk_size = False

    def on_message_complete(self) -> None:
        self._passed = True
        if self._refused:
            return
        self._head_open = True
        self._head_bytes = self._trailer_size = 0
        self._after_chunk_size = False
        self._message_ended = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused and self.cycle.response_complete and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self._send_refusal()

    def _head_size(self) -> int:
        """The head's bytes as parsed (request line, names, values, ':', CRLFs); a lower bound,
        as the spaces around values are not kept."""
        request_line = len(self.parser.get_method()) + len(self.url) + len(" HTTP/1.1\r\n") + 1
        headers = sum(len(name) + len(value) + 3 for name, value in self.headers)
        return request_line + headers + 2

    def _done_reading(self) -> bool:
        """The rest of a read is not for the parser: the head was refused, uvicorn closed the
        connection (a bad request) or handed it over (an upgrade)."""
        return (
            self._refused
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        )

    def _refuse_head(self) -> None:
        """431 and close; after the answers to the requests before it, if a client pipelined
        (sent this head before they were answered): stop reading and answer when they are done."""
        self._refused = True
        self.logger.warning("Request head over %d bytes: refused with 431.", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:
            self._send_refusal()
        else:
            self.flow.pause_reading()

    def _refuse_trailers(self) -> None:
        """431 and close, unless the app has begun its answer: then only close. Either way the
        app is told the client is gone, as it waits for a body that will not end."""
        self._refused = True
        self.logger.warning("Request head and trailers over %d bytes: refused.", MAX_HEAD_BYTES)
        if self.cycle.response_started:
            self.transport.close()
        else:
            self._send_refusal()

    def _send_refusal(self) -> None:
        head = [STATUS_LINE[_STATUS]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, _REFUSAL_HEADERS, _REFUSAL_BODY]))
        self.transport.close()
