"""A TCP proxy between the service and PostgreSQL that cuts the connection at a chosen point of
the wire protocol, to produce the failures whose outcome the service cannot know.

Armed while the connection is idle (between requests), it reads the protocol's messages (a type
byte and a length) from the next byte on, and cuts both sides:
- `Cut.AFTER_COMMIT`: when the server, having executed a command (CommandComplete), reports
  it is idle outside a transaction (ReadyForQuery "I"), which it sends only once the statement
  or the COMMIT has committed; that message and anything after it never reach the service.
  (A round trip that only prepares a statement completes no command, and is let through.)
- `Cut.AT_COMMIT`: when the service sends COMMIT, which never reaches the server.
- `Cut.HOLD_COMMIT`: the COMMIT never reaches the server either, but the connection stays open
  (a stalled network): the service hears nothing until its command timeout.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from collections.abc import Callable
from types import TracebackType


class Cut(enum.Enum):
    AFTER_COMMIT = "after the server committed"
    AT_COMMIT = "instead of sending COMMIT"
    HOLD_COMMIT = "holding COMMIT back, the connection left open"


def _messages(buffer: bytes) -> tuple[list[tuple[bytes, bytes, bytes]], bytes]:
    """The complete (type, body, raw) messages at the start of `buffer`, and the rest."""
    messages = []
    while len(buffer) >= 5:
        (length,) = struct.unpack("!i", buffer[1:5])
        if len(buffer) < 1 + length:
            break
        raw, buffer = buffer[: 1 + length], buffer[1 + length :]
        messages.append((raw[:1], raw[5:], raw))
    return messages, buffer


# An Execute ended: CommandComplete, or PortalSuspended when it asked for a number of rows (as
# asyncpg's fetchrow does: one).
EXECUTED = (b"C", b"s")


class _Committed:
    """Whether the server's messages since arming say a command has committed."""

    def __init__(self) -> None:
        self.completed = False

    def __call__(self, kind: bytes, body: bytes) -> bool:
        self.completed |= kind in EXECUTED
        return self.completed and kind == b"Z" and body == b"I"


def _commits(kind: bytes, body: bytes) -> bool:
    return kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT")


class PgProxy:
    """`async with PgProxy(host, port) as proxy`: listens on 127.0.0.1:`proxy.port`."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.cuts = 0  # connections cut so far
        self._armed: Cut | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def arm(self, cut: Cut) -> None:
        """Cut the next connection that reaches `cut`, once."""
        self._armed = cut

    async def __aenter__(self) -> PgProxy:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _link(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        server, to_server = await asyncio.open_connection(*self.upstream)
        self._writers |= {to_client, to_server}
        cut = asyncio.Event()
        try:
            await asyncio.gather(
                self._pump(
                    client,
                    to_server,
                    (cut, to_client),
                    (Cut.AT_COMMIT, Cut.HOLD_COMMIT),
                    lambda: _commits,
                ),
                self._pump(server, to_client, (cut, to_server), (Cut.AFTER_COMMIT,), _Committed),
            )
        finally:
            self._writers -= {to_client, to_server}

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[asyncio.Event, asyncio.StreamWriter],
        modes: tuple[Cut, ...],
        watch: Callable[[], Callable[[bytes, bytes], bool]],
    ) -> None:
        """Copies one direction; while armed with one of `modes`, message by message, until the
        watcher made at arming says to cut (or, for `HOLD_COMMIT`, to forward nothing more).

        `link` is the link's cut flag and the other direction's writer.
        """
        cut, other = link
        pending = b""
        cuts_here: Callable[[bytes, bytes], bool] | None = None
        held = False
        while not cut.is_set():
            try:
                data = await reader.read(65536)
            except ConnectionError:
                data = b""
            if not data or cut.is_set():
                break
            if held:
                continue
            if self._armed not in modes:
                pending, cuts_here = b"", None
                writer.write(data)
                continue
            cuts_here = cuts_here or watch()
            messages, pending = _messages(pending + data)
            for kind, body, raw in messages:
                if cuts_here(kind, body):
                    held = self._armed is Cut.HOLD_COMMIT
                    self._armed = None
                    self.cuts += 1
                    if not held:
                        cut.set()
                    break
                writer.write(raw)
        # Either side ending ends both: closing a socket ends the read of the pump on it.
        cut.set()
        writer.close()
        other.close()
