"""The control-character rule for user text, checked against Unicode's own categories."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from echonats import model
from echonats.model import _has_control_chars, clean_text
from echonats.model.errors import ValidationFailed


def test_the_control_character_rule_matches_the_unicode_categories_for_every_code_point() -> None:
    mismatches = [
        cp
        for cp in range(sys.maxunicode + 1)
        if _has_control_chars(chr(cp))
        != (unicodedata.category(chr(cp)) in ("Cc", "Cs") and chr(cp) not in "\n\t")
    ]
    assert mismatches == []


@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "esc\x1b[0m", "del\x7f", "c1\x85x", "lone\ud800"])
def test_text_with_control_characters_is_refused(text: str) -> None:
    with pytest.raises(ValidationFailed):
        clean_text(text, field_name="body", max_chars=100, multiline=True)


def test_newlines_and_tabs_are_fine_in_multiline_text() -> None:
    assert clean_text(" a\n\tb ", field_name="body", max_chars=100, multiline=True) == "a\n\tb"


CONTROLS = ["a\x00b", "tab\tx", "line\nx", "del\x7f", "c1\x85x", "lone\ud800"]


@pytest.mark.parametrize("value", [*CONTROLS, "", " padded", "padded ", "x" * 256])
def test_user_ids_with_control_characters_surrounding_spaces_or_bad_lengths_are_refused(value: str) -> None:
    with pytest.raises(ValidationFailed):
        model.user_id(value)


@pytest.mark.parametrize("value", ["f:keycloak:ann", "auth0|5f3", "ann smith", "x" * 255, "ünï"])
def test_user_ids_are_kept_exactly_as_given(value: str) -> None:
    assert model.user_id(value) == value


@pytest.mark.parametrize("local", CONTROLS)
def test_emails_with_control_characters_are_refused(local: str) -> None:
    with pytest.raises(ValidationFailed):
        model.email(f"{local}@example.org")
