"""Language tags: spelling them one way, the fallbacks of one, and the best of an
Accept-Language header among the languages the mail templates speak."""

from __future__ import annotations

import re

DEFAULT_LOCALE = "en"
# A BCP 47 tag as people send it: a language and up to three subtags (de, de-AT, zh-Hant-TW).
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,3}$"
LOCALE_MAX_LENGTH = 35
_LANGUAGE_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*)$")
# Accept-Language is read up to this many characters and ranges: it is the caller's to fill.
_ACCEPT_LANGUAGE_MAX_CHARS = 1000
_ACCEPT_LANGUAGE_MAX_RANGES = 20


def normalize_locale(tag: str) -> str:
    """One spelling of a tag: lower case, hyphens (de_AT, de-at and DE-AT are one)."""
    return tag.strip().replace("_", "-").lower()


def locale_fallbacks(locale: str | None) -> list[str]:
    """The tags to try for ``locale``, most specific first, English last: de-at, de, en."""
    tags = _prefixes(locale) if locale else []
    if DEFAULT_LOCALE not in tags:
        tags.append(DEFAULT_LOCALE)
    return tags


def negotiate_locale(accept_language: str | None, available: frozenset[str]) -> str | None:
    """The caller's most preferred language among ``available`` (RFC 4647 lookup over the
    header's ranges, by their q values; de-AT finds de), or None when none of them is."""
    if not accept_language:
        return None
    ranges: list[tuple[float, int, str]] = []
    parts = accept_language[:_ACCEPT_LANGUAGE_MAX_CHARS].split(",")
    for position, part in enumerate(parts[:_ACCEPT_LANGUAGE_MAX_RANGES]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not _LANGUAGE_RANGE.match(tag) or tag == "*":
            continue
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        if quality > 0:
            ranges.append((-quality, position, normalize_locale(tag)))
    for _, _, tag in sorted(ranges):
        for candidate in _prefixes(tag):
            if candidate in available:
                return candidate
    return None


def _prefixes(tag: str) -> list[str]:
    parts = normalize_locale(tag).split("-")
    return ["-".join(parts[:end]) for end in range(len(parts), 0, -1)]
