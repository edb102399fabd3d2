"""Token redaction on every log line, and the rate-limited log of dropped requests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from echonats.logs import RateLimitedLog, configure_logging, redact
from echonats.settings import LogSettings

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsInRlbmFudF9pZCI6InQifQ."
    "FsHMzzy0PdLhfcOvA9hc9v8HwRVLCJZryy0sXp7OZhY"
)
ADMIN_TOKEN = "static-admin-token-0123456789"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'"WebSocket /ws?token={JWT}" [accepted]', '"WebSocket /ws?token=[redacted]" [accepted]'),
        (f"/ws/stomp?a=1&token={ADMIN_TOKEN}&b=2", "/ws/stomp?a=1&token=[redacted]&b=2"),
        (f"GET /x?access_token={JWT}", "GET /x?access_token=[redacted]"),
        (f"Authorization: Bearer {ADMIN_TOKEN}", "Authorization: Bearer [redacted]"),
        (f"authorization: bearer {JWT}", "authorization: bearer [redacted]"),
        (f"bad token {JWT} refused", "bad token [redacted] refused"),
        ("missing bearer token", "missing bearer token"),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    access_disabled, access_propagate = access.disabled, access.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled, access.propagate = access_disabled, access_propagate


LOGGERS = ["uvicorn.error", "uvicorn.access", "litestar", "echonats.gateway.ws", "root"]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_handler_output_carries_a_token(log_format: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings(level="DEBUG", format=log_format))
    access = logging.getLogger("uvicorn.access")  # off by default; redacted if switched on
    access.disabled, access.propagate = False, True  # (uvicorn.Config(access_log=False) unhooks it)
    for name in LOGGERS:
        logger = logging.getLogger(None if name == "root" else name)
        # uvicorn's own calls: the path with its query string as an argument
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", f"/ws?token={JWT}")
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/x?token={ADMIN_TOKEN}", "1.1", 200)
        logger.warning("header %s", {"authorization": f"Bearer {ADMIN_TOKEN}"})
        logger.info("request", extra={"url": f"/ws?token={JWT}"})
        try:
            raise ValueError(f"cannot decode {JWT}")
        except ValueError:
            logger.exception("failed with Authorization: Bearer %s", ADMIN_TOKEN)
    output = capsys.readouterr().err
    lines = output.strip().splitlines()
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert {entry["logger"] for entry in entries} == set(LOGGERS)
    # five redactions per logger (message, args, dict arg, exception message, traceback), plus the
    # ``url`` context field that only the json format prints
    per_logger = 6 if log_format == "json" else 5
    assert output.count("[redacted]") >= per_logger * len(LOGGERS)
    for secret in (JWT, ADMIN_TOKEN, JWT.split(".")[2], "eyJ"):
        assert secret not in output


@pytest.mark.usefixtures("restore_logging")
def test_a_malformed_log_call_is_reported_by_logging_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings(level="INFO", format="text"))
    logging.getLogger("echonats.test").info("%d apples", "not a number")
    assert "not a number" in capsys.readouterr().err


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_log_writes_one_line_per_interval_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    drops = RateLimitedLog(logging.getLogger("echonats.test.drops"), "dropped", 10.0, clock=clock)
    caplog.set_level(logging.INFO, logger="echonats.test.drops")
    for _ in range(1000):
        drops.note("header timeout")
    drops.note("header too large")
    assert [r.getMessage() for r in caplog.records] == [
        "dropped (header timeout: 1; at most one such line per 10s)"
    ]
    clock.now += 10.0
    drops.note("header timeout")
    assert caplog.records[-1].getMessage() == (
        "dropped (header timeout: 1000, header too large: 1; at most one such line per 10s)"
    )
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert len(caplog.records) == 2
