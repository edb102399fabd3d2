"""Logging set-up: one JSON object per line in production, readable text for `make run`.

Every handler configured here redacts credentials (:class:`RedactTokens`): uvicorn logs each
WebSocket upgrade with its query string (``/ws?token=<jwt>``), and any library may put a URL or a
header into a message or an exception, so redaction happens on every record, whatever its logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from echonats.settings import LogSettings

# Context fields a log call may pass with ``extra={...}``; anything else stays out of the output
# so a careless ``extra`` cannot leak message bodies or tokens.
CONTEXT_FIELDS = ("tenant", "user", "channel", "request_id", "connection_id", "service", "url", "version")

REDACTED = "[redacted]"
_CREDENTIALS = re.compile(
    # ?token=… / &access_token=… query parameters, whatever the value looks like
    r"(?P<param>\b[\w-]*token=)[^&\s\"'#;,]+"
    # Authorization: Bearer … (also the static admin token, which is not a JWT); 8+ characters so that
    # prose like "missing bearer token" stays readable
    r"|(?P<scheme>\bbearer\s+)[\w.~+/=-]{8,}"
    # anything JWT-shaped on its own: base64url header (always `eyJ`, i.e. `{"`), payload, signature
    r"|eyJ[\w-]*\.[\w-]+\.[\w-]*",
    re.IGNORECASE,
)
_MARKERS = ("token", "bearer", "eyj")


def _replace(match: re.Match[str]) -> str:
    return (match.group("param") or match.group("scheme") or "") + REDACTED


def redact(text: str) -> str:
    """``text`` with every credential replaced by ``[redacted]`` (one lower() when there is none)."""
    lowered = text.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return text
    return _CREDENTIALS.sub(_replace, text)


class RedactTokens(logging.Filter):
    """Rewrites a record in place so that no handler (ours or one added later) sees a credential:
    the message with its arguments merged, the context fields, and the exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: the handler reports it when it emits the record
            return True
        cleaned = redact(message)
        if record.args or cleaned != record.msg:
            record.msg, record.args = cleaned, None
        for key in CONTEXT_FIELDS:
            value = record.__dict__.get(key)
            if isinstance(value, str):
                record.__dict__[key] = redact(value)
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback is formatted (once) here.
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_text or record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str)


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # uvicorn's access log duplicates our request metrics (and costs a line per request); if it is
    # ever switched on, the filter above redacts its ?token= query strings like everything else.
    logging.getLogger("uvicorn.access").disabled = True


class RateLimitedLog:
    """Counts events of a kind anyone can cause (a client dropping a request) and logs them as at most
    one INFO line per ``interval_s``, with the counts since the previous line, so a flood of them
    cannot flood the log."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._interval_s = interval_s
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._next_line_at = float("-inf")

    def note(self, reason: str) -> None:
        self._counts[reason] += 1
        now = self._clock()
        if now < self._next_line_at:
            return
        self._next_line_at = now + self._interval_s
        summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(self._counts.items()))
        self._counts.clear()
        self._logger.info("%s (%s; at most one such line per %gs)", self._what, summary, self._interval_s)
