"""Language tags: their fallbacks, and the best of an Accept-Language header among the
languages mail is written in."""

from __future__ import annotations

import pytest

from backend.mail.locales import locale_fallbacks, negotiate_locale

SHIPPED = frozenset({"en", "de"})


@pytest.mark.parametrize(
    ("locale", "fallbacks"),
    [
        (None, ["en"]),
        ("de", ["de", "en"]),
        ("de_AT", ["de-at", "de", "en"]),
        ("en-GB", ["en-gb", "en"]),
        ("zh-Hant-TW", ["zh-hant-tw", "zh-hant", "zh", "en"]),
    ],
)
def test_a_locale_falls_back_to_its_language_then_english(locale, fallbacks):
    assert locale_fallbacks(locale) == fallbacks


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr-CH, fr;q=0.9, de;q=0.7, *;q=0.5", "de"),
        ("en-US,en;q=0.9,de;q=0.8", "en"),
        ("de;q=0.2, en;q=0.9", "en"),  # by quality, not by order
        ("de;q=0, en", "en"),  # q=0: not acceptable
        ("fr, es", None),
        ("*", None),
        ("", None),
        (None, None),
        ("de;q=abc, en-GB", "en"),  # a broken range is skipped
        ("x" * 5000, None),
        (",".join(["fr"] * 100) + ",de", None),  # only the first ranges are read
    ],
)
def test_accept_language_picks_the_best_language_mail_is_written_in(header, expected):
    assert negotiate_locale(header, SHIPPED) == expected
