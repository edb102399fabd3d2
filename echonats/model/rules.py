"""Validation rules for user input: each returns the cleaned value or raises ValidationFailed."""

from __future__ import annotations

import re

import emoji as emoji_data

from echonats.model.entities import (
    MAX_BODY_CHARS,
    MAX_CHANNEL_NAME_CHARS,
    MAX_DISPLAY_NAME_CHARS,
    MAX_EMAIL_CHARS,
    MAX_NONCE_CHARS,
    MAX_STATUS_TEXT_CHARS,
    MAX_TENANT_NAME_CHARS,
    MAX_TOPIC_CHARS,
    MAX_USER_ID_CHARS,
)
from echonats.model.errors import ValidationFailed
from echonats.model.timeline import MAX_EMOJI_CHARS

# -- validation rules ------------------------------------------------------------------------------


# Unicode categories Cc (C0 and C1 controls) and Cs (surrogates), except newline and tab: one
# regex scan instead of a category lookup per character (a unit test checks every code point).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _has_control_chars(text: str) -> bool:
    return _CONTROL_CHARS.search(text) is not None


def clean_text(
    value: str, *, field_name: str, max_chars: int, min_chars: int = 1, multiline: bool = False
) -> str:
    text = value.strip()
    if not min_chars <= len(text) <= max_chars:
        raise ValidationFailed(
            f"{field_name} must be {min_chars}..{max_chars} characters after trimming (got {len(text)})",
            details={"field": field_name},
        )
    if (not multiline and ("\n" in text or "\t" in text)) or _has_control_chars(text):
        raise ValidationFailed(f"{field_name} contains control characters", details={"field": field_name})
    return text


def message_body(value: str) -> str:
    # Windows and old-Mac line endings are line breaks, not control characters.
    normalized = value.replace("\r\n", "\n").replace("\r", "\n")
    return clean_text(normalized, field_name="body", max_chars=MAX_BODY_CHARS, multiline=True)


def channel_name(value: str) -> str:
    return clean_text(value, field_name="name", max_chars=MAX_CHANNEL_NAME_CHARS)


def channel_topic(value: str) -> str:
    return clean_text(value, field_name="topic", max_chars=MAX_TOPIC_CHARS, min_chars=0)


def tenant_name(value: str) -> str:
    return clean_text(value, field_name="name", max_chars=MAX_TENANT_NAME_CHARS)


def display_name(value: str, field_name: str = "displayName") -> str:
    return clean_text(value, field_name=field_name, max_chars=MAX_DISPLAY_NAME_CHARS)


def nonce(value: str | None) -> str | None:
    if value is None:
        return None
    return clean_text(value, field_name="nonce", max_chars=MAX_NONCE_CHARS)


def email(value: str, field_name: str = "email") -> str:
    text = value.strip()
    local, _, domain = text.partition("@")
    if (
        not local
        or "." not in domain
        or len(text) > MAX_EMAIL_CHARS
        or any(ch.isspace() for ch in text)
        or _has_control_chars(text)
    ):
        raise ValidationFailed(f"{field_name} is not an email address", details={"field": field_name})
    return text


def user_id(value: str, field_name: str = "userId") -> str:
    """The one rule for user ids wherever they come in (a token's ``sub``, a path, a query, a body).

    Kept exactly as given (an issuer's ids are opaque, so no trimming): 1..255 characters, no
    surrounding whitespace, no control characters (NUL included: PostgreSQL text cannot hold it).
    """
    if not 1 <= len(value) <= MAX_USER_ID_CHARS:
        raise ValidationFailed(
            f"{field_name} must be 1..{MAX_USER_ID_CHARS} characters",
            details={"field": field_name},
        )
    if value != value.strip() or "\n" in value or "\t" in value or _has_control_chars(value):
        raise ValidationFailed(
            f"{field_name} contains surrounding whitespace or control characters",
            details={"field": field_name},
        )
    return value


_SHORTCODE = re.compile(rf"^:[a-z0-9_+\-]{{1,{MAX_EMOJI_CHARS - 2}}}:$")


def emoji(value: str) -> str:
    """A reaction: one Unicode emoji (a sequence such as a skin tone or a ZWJ family counts as one,
    per the `emoji` package's list of fully-qualified emoji) or a ``:shortcode:`` (lowercase
    letters, digits, ``_``, ``+``, ``-``), which clients map to custom or standard emoji."""
    if len(value) <= MAX_EMOJI_CHARS and (_SHORTCODE.match(value) or emoji_data.is_emoji(value)):
        return value
    raise ValidationFailed(
        "emoji must be one Unicode emoji or a :shortcode: (a-z, 0-9, _ + -)", details={"field": "emoji"}
    )


_USER_MENTION = re.compile(rf"<@([^<>\s]{{1,{MAX_USER_ID_CHARS}}})>")
_CHANNEL_MENTION = re.compile(r"(?<![\w@])@(?:here|channel)\b")
MAX_MENTIONS = 50  # distinct users one message may notify by name


def mentions(body: str) -> tuple[tuple[str, ...], bool]:
    """Who a body mentions: the user ids written as ``<@userId>`` (first 50 distinct, in order),
    and whether it says ``@here`` or ``@channel``. Rendering them is the clients' business."""
    named = tuple(dict.fromkeys(_USER_MENTION.findall(body)))[:MAX_MENTIONS]
    return named, _CHANNEL_MENTION.search(body) is not None


def status_text(value: str) -> str:
    return clean_text(value, field_name="text", max_chars=MAX_STATUS_TEXT_CHARS, min_chars=0)
