"""The Litestar application: routes, error handlers, OpenAPI. Wiring lives in ``echonats.bootstrap``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from echonats import __version__
from echonats.gateway.errors import EXCEPTION_HANDLERS
from echonats.gateway.health import health, metrics, ready
from echonats.settings import Settings

MAX_REQUEST_BODY_BYTES = 64 * 1024


def build_app(
    settings: Settings,
    *,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
) -> Litestar:
    return Litestar(
        route_handlers=[health, ready, metrics],
        lifespan=list(lifespan),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="echonats",
            version=__version__,
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        debug=False,
        # Logging is configured once by echonats.logs; Litestar must not install its own handlers.
        logging_config=None,
    )
