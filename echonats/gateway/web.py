"""The web client at ``/`` and the OpenAPI UI's assets, all served from installed packages so
nothing loads from a CDN: the client's static files ship inside echonats (``gateway/webclient``),
Swagger UI's come from the ``swagger-ui-bundle-v2`` wheel (D52)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import swagger_ui_bundle
from litestar import get
from litestar.datastructures import CacheControlHeader, State
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import File
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

WEB_CLIENT_DIR = Path(__file__).with_name("webclient")
SWAGGER_DIR = Path(str(swagger_ui_bundle.swagger_ui_path))
APP_PATH = "/app"  # the client's assets
SWAGGER_ASSETS_PATH = "/schema-assets"
# The client's index names its modules without a content hash: revalidate rather than cache blindly.
REVALIDATE = {"Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class WebClientConfig:
    """What the gateway tells its web client about signing in."""

    oidc_issuer: str | None  # e.g. http://localhost:18080/realms/echonats (its discovery document is read)
    oidc_client_id: str
    dev_tokens: bool  # HS256 development tokens are accepted: the client offers to paste one


class WebConfigOut(msgspec.Struct, rename="camel", kw_only=True):
    oidc_issuer: str | None
    oidc_client_id: str
    dev_tokens: bool


@get("/", include_in_schema=False, name="web-client", sync_to_thread=False)
def web_client() -> File:
    """The client's page; also the OIDC redirect target (``?code=&state=``)."""
    return File(
        WEB_CLIENT_DIR / "index.html",
        filename="index.html",
        media_type="text/html; charset=utf-8",
        content_disposition_type="inline",
        headers=REVALIDATE,
    )


@get("/api/v1/web-config", tags=["web client"], summary="How the web client signs in (no token needed)")
async def web_config(state: State) -> WebConfigOut:
    config: WebClientConfig = state.web_client
    return WebConfigOut(
        oidc_issuer=config.oidc_issuer, oidc_client_id=config.oidc_client_id, dev_tokens=config.dev_tokens
    )


def web_client_handlers() -> list[ControllerRouterHandler]:
    return [
        web_client,
        web_config,
        create_static_files_router(
            path=APP_PATH,
            directories=[WEB_CLIENT_DIR],
            name="web-client-assets",
            include_in_schema=False,
            send_as_attachment=False,
            cache_control=CacheControlHeader(no_cache=True),
        ),
    ]


def swagger_assets_handler() -> Router:
    return create_static_files_router(
        path=SWAGGER_ASSETS_PATH, directories=[SWAGGER_DIR], name="swagger-assets", include_in_schema=False
    )


def offline_swagger() -> SwaggerRenderPlugin:
    """Swagger UI at ``/schema`` (and ``/schema/swagger``) from the local assets."""
    return SwaggerRenderPlugin(
        js_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS_PATH}/favicon-32x32.png'>",
    )
