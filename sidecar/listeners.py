"""HTTP listeners that a client cannot hold open: an idle timeout, a connection cap, quiet logs.

Every aiohttp server of the sidecar (health + /metrics, the external metrics API) starts here.
- A client must send a whole request within `idle_timeout_seconds` of connecting or of its
  previous answer, or the connection is closed: aiohttp's keep-alive timer runs from the moment a
  connection opens, so it is the header-read timeout as well. A TLS handshake gets as long.
- At most `max_connections` connections are open per listener; one more is closed on arrival,
  so slow clients run out of their allowance, not the process's file descriptors.
- A malformed request is the client's mistake: logged at debug, one line, no traceback (it was an
  ERROR with a 1 KB traceback each, which a scanner turns into a flood).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    idle_timeout_seconds: float
    max_connections: int


class _ProtocolLogger(logging.Logger):
    """aiohttp's per-connection logger: bad requests become one debug line; anything else stays
    an error with its traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            # The parser's message quotes the bad bytes over several lines: folded into one.
            self.debug("%s: %s", msg % args if args else msg, " ".join(str(exc_info).split()), **kwargs)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


_protocol_log = _ProtocolLogger(f"{__name__}.protocol")
_protocol_log.parent = log


class _Refused(asyncio.Protocol):
    """What a connection over the cap gets: closed before a byte is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _CappedSite(web.BaseSite):
    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(runner, ssl_context=tls)
        self._address = (host, port)
        self._limits = limits
        self._app_runner = runner
        self.refused = 0

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._address[0]}:{self._address[1]}"

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._app_runner.server
        assert server is not None
        if len(server.connections) >= self._limits.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                cap = self._limits.max_connections
                log.warning(
                    "connection refused: the listener is at its cap",
                    extra={"listener": self.name, "cap": cap, "refused": self.refused},
                )
            return _Refused()
        return server()

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            *self._address,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            ssl_handshake_timeout=self._limits.idle_timeout_seconds if self._ssl_context else None,
        )


async def start_listener(
    stack: AsyncExitStack,
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Serve `app` on host:port until `stack` closes; returns the bound "host:port"."""
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=limits.idle_timeout_seconds, logger=_protocol_log
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await _CappedSite(runner, host, port, tls, limits).start()
    bound_host, bound_port = runner.addresses[0][:2]
    return f"{bound_host}:{bound_port}"
