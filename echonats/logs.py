"""Logging set-up: one JSON object per line in production, readable text for `make run`."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from echonats.settings import LogSettings

# Context fields a log call may pass with ``extra={...}``; anything else stays out of the output
# so a careless ``extra`` cannot leak message bodies or tokens.
CONTEXT_FIELDS = ("tenant", "user", "channel", "request_id", "connection_id", "service", "url", "version")


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
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # uvicorn's access log duplicates our request metrics and can carry ?token= query strings.
    logging.getLogger("uvicorn.access").disabled = True
