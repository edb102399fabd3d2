"""HTTP request metrics and request ids: one ASGI middleware, no per-route code."""

from __future__ import annotations

import logging
import time
import uuid

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from echonats import metrics

log = logging.getLogger("echonats.http")

REQUEST_ID_HEADER = b"x-request-id"


def request_metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        # Accept a caller's id only if it is short and printable; never log arbitrary client bytes.
        request_id = incoming.decode("latin-1") if 0 < len(incoming) <= 64 and incoming.isascii() else None
        request_id = request_id or uuid.uuid4().hex
        status = 500
        client_gone = False

        async def receive_noting_disconnect() -> ReceiveMessage:
            nonlocal client_gone
            message = await receive()
            if message["type"] == "http.disconnect":
                client_gone = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await app(scope, receive_noting_disconnect, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            # The route template, not the raw path: ids in paths would explode label cardinality.
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", "GET"))
            if client_gone and status == 500:
                # The client left (or was dropped for a body timeout, logged by gateway.http_limits)
                # before its body arrived, and Litestar answered 500 to nobody. Anyone can cause that,
                # so it is no server error: counted as 499 like nginx does, and logged at DEBUG only.
                status = 499
            metrics.http_request_seconds.labels(method, route, str(status)).observe(elapsed)
            if status >= 500 and status != 503:  # 503s are dependency outages, logged where raised
                log.error("request failed", extra={"request_id": request_id, "url": route})
            else:
                log.debug("request", extra={"request_id": request_id, "url": route})

    return middleware
