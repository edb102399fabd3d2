"""The Litestar application: routes, error handlers, OpenAPI. Wiring lives in ``echonats.bootstrap``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from echonats import __version__
from echonats.gateway.auth import AUTH_DEPENDENCIES
from echonats.gateway.conversation_routes import CONVERSATION_CONTROLLERS
from echonats.gateway.echopulse_routes import ECHOPULSE_CONTROLLERS
from echonats.gateway.errors import EXCEPTION_HANDLERS
from echonats.gateway.health import health, metrics, ready
from echonats.gateway.media_type import require_json_body
from echonats.gateway.message_routes import MessageController
from echonats.gateway.observability import request_metrics_middleware
from echonats.gateway.routes import CONTROLLERS
from echonats.gateway.sockets import chat_socket, stomp_socket
from echonats.gateway.web import offline_swagger, swagger_assets_handler, web_client_handlers
from echonats.gateway.workspace_routes import WorkspaceController

MAX_REQUEST_BODY_BYTES = 64 * 1024


def build_app(
    *,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
    cors_origins: Sequence[str] = (),
    web_client: bool = True,
) -> Litestar:
    # Litestar's CORS middleware answers preflights and adds the headers for these exact origins
    # (with credentials: EchoPulse's Keycloak-style XHRs send them).
    cors = (
        CORSConfig(
            allow_origins=list(cors_origins),
            allow_credentials=True,
            allow_headers=["Authorization", "Content-Type", "X-Request-Id", "Echonats-Tenant"],
            expose_headers=["X-Request-Id", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        )
        if cors_origins
        else None
    )
    return Litestar(
        cors_config=cors,
        route_handlers=[
            health,
            ready,
            metrics,
            chat_socket,
            stomp_socket,
            *CONTROLLERS,
            MessageController,
            *CONVERSATION_CONTROLLERS,
            *ECHOPULSE_CONTROLLERS,
            WorkspaceController,
            swagger_assets_handler(),
            *(web_client_handlers() if web_client else []),
        ],
        dependencies=AUTH_DEPENDENCIES,
        guards=[require_json_body],
        lifespan=list(lifespan),
        middleware=[request_metrics_middleware],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="echonats",
            version=__version__,
            description="Real-time chat backend: REST under /api/v1, WebSocket at /ws.",
            path="/schema",
            # Swagger UI from a wheel: the docs work offline (Litestar's default UIs load from CDNs).
            render_plugins=[offline_swagger()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"BearerToken": []}],
        ),
        debug=False,
        # Logging is configured once by echonats.logs; Litestar must not install its own handlers.
        logging_config=None,
    )
