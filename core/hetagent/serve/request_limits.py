"""Limits every HTTP request is held to (`spec/serve.md`, "Limits"): an ASGI middleware around the API.

- at most `max_concurrent` requests in the app at once; more get 503 with Retry-After;
- a body of at most `max_body_bytes` (by Content-Length, and counted as it arrives): 413;
- the whole body must arrive within `body_timeout_s` of the headers: 408;
- a request line and headers must arrive within `header_timeout_s` of the connection's start (or of the
  previous response on a kept-alive connection), else the connection is closed (`protocol`).

Every refusal has OpenAI's error shape, as every other error of the API does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 2**20  # a minute of 16 kHz audio, base64-encoded, is ~2.6 MB
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    max_concurrent: int = 512


class LimitRequests:
    """The ASGI middleware: refusals before the app sees the request are answered here; those found while the
    app reads the body are raised into it as `ApiError`s, which its handler answers."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits, self.active = app, limits, 0

    async def __call__(self, scope, receive, send):
        from hetagent.serve.api import ApiError  # FastAPI: imported with the app, not by `hetagent --help`

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limits = self.limits
        if self.active >= limits.max_concurrent:
            return await _refuse(send, 503, f"the server is handling {limits.max_concurrent} requests, its limit; "
                                 "retry shortly", "too_many_requests", {"retry-after": "1"})
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return await _refuse(send, 413, f"the request body ({length.decode(errors='replace')} bytes) exceeds the "
                                 f"server's limit of {limits.max_body_bytes:,} bytes", "body_too_large")
        received, finished = 0, False
        deadline = asyncio.get_running_loop().time() + limits.body_timeout_s

        async def limited_receive():
            nonlocal received, finished
            if finished:  # the body is in: what follows is the disconnect a streaming response listens for
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - asyncio.get_running_loop().time(), 0))
            except asyncio.TimeoutError:
                raise ApiError(408, f"the request body did not arrive within {limits.body_timeout_s:g} s",
                               code="body_timeout") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                finished = not message.get("more_body", False)
                if received > limits.max_body_bytes:
                    raise ApiError(413, f"the request body exceeds the server's limit of {limits.max_body_bytes:,} "
                                   "bytes", code="body_too_large")
            return message

        self.active += 1
        try:
            await self.app(scope, limited_receive, send)
        finally:
            self.active -= 1


def protocol(header_timeout_s: float):
    """uvicorn's h11 protocol with a deadline for each request's line and headers (uvicorn has none: a
    connection that never sends a request would be held forever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def _arm(self):
            self.timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self):
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

        def _expire(self):
            self.timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def handle_events(self):
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:  # a request's headers are in
                self._disarm()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._disarm()
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline


async def _refuse(send, status: int, message: str, code: str, headers: dict | None = None) -> None:
    from hetagent.serve.api import error_body

    body = json.dumps(error_body(status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body})
