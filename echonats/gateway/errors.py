"""The one place where errors become HTTP responses: ``{"error": {code, message, details?}}``."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from echonats import metrics
from echonats.model import errors

log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[errors.EchonatsError], int] = {
    errors.ValidationFailed: 422,
    errors.PayloadTooLarge: 413,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.LimitExceeded: 409,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
    errors.ConfigError: 500,
}

# Litestar's own HTTP errors (routing, body parsing) get codes from the same vocabulary.
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


def status_for(exc: errors.EchonatsError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def _respond(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorResponse]:
    return Response(
        ErrorResponse(ErrorBody(code, message, details or None)), status_code=status, headers=headers
    )


def handle_domain_error(_: Request[Any, Any, Any], exc: errors.EchonatsError) -> Response[ErrorResponse]:
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="echonats"'
    if isinstance(exc, errors.RateLimited):
        metrics.rate_limited.labels("rest").inc()
        headers["Retry-After"] = str(max(1, -(-exc.retry_after_ms // 1000)))
        headers["X-RateLimit-Limit"] = str(exc.limit)
        headers["X-RateLimit-Remaining"] = str(exc.remaining)
    status = status_for(exc)
    if status == 503:
        log.warning("%s: %s", exc.code, exc.message)  # a dependency outage, reported by /ready too
    elif status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return _respond(status, exc.code, exc.message, exc.details, headers)


def handle_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    details: dict[str, Any] | None = None
    if isinstance(exc, ValidationException) and exc.extra:
        details = {"errors": exc.extra}
    return _respond(
        status, _CODE_BY_STATUS.get(status, "http_error"), str(exc.detail), details, dict(exc.headers or {})
    )


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    log.exception("unhandled error", exc_info=exc)
    return _respond(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


def handle_recursion(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorResponse]:
    # Decoding a deeply nested JSON body ends here before any route (or auth) runs: a client error,
    # and not worth a traceback per request.
    if request.scope.get("route_handler") is not None and "deserializ" not in str(exc):
        return handle_unexpected(request, exc)
    return _respond(400, "bad_request", "JSON nested too deeply")


EXCEPTION_HANDLERS = {
    RecursionError: handle_recursion,
    errors.EchonatsError: handle_domain_error,
    HTTPException: handle_http_error,
    Exception: handle_unexpected,
}
