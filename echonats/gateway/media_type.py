"""415 for a JSON route whose request says its body is something else.

Litestar decodes a handler's ``data`` as JSON whatever the ``Content-Type`` claims, so a form post
or ``text/plain`` would be read as JSON by accident. A missing ``Content-Type`` is accepted as JSON:
``curl --data-binary`` and many scripts send none, and the body has only one meaning here.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

# application/json and structured-syntax JSON types (RFC 6839), e.g. application/merge-patch+json.
_JSON_MEDIA_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json", re.IGNORECASE)


async def require_json_body(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """A guard (runs before the body is read or the token checked) for routes that take a body.
    Async although it awaits nothing: Litestar runs a sync guard in a worker thread, which cost
    every REST request a thread hop."""
    if not isinstance(handler, HTTPRouteHandler) or "data" not in handler.parsed_fn_signature.parameters:
        return
    raw = connection.headers.get("content-type")
    if raw is None:
        return
    media_type = raw.split(";", 1)[0].strip()
    if not _JSON_MEDIA_TYPE.fullmatch(media_type):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail="the body must be JSON: send Content-Type: application/json (or none)",
        )
