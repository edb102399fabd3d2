"""The nats-py exceptions that mean "NATS cannot serve this now"; translated to ``Unavailable`` here."""

from __future__ import annotations

import nats.errors

NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)
