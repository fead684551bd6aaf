"""Names people give things (themselves, orgs, API keys): never blank, trimmed when saved."""

from __future__ import annotations

import msgspec

# Whitespace to Python's regexes and str.strip, and to JSON Schema's (ECMA-262) regexes: the
# two disagree (\x1c-\x1f and \x85 are space to Python only, \ufeff to ECMA only), so a
# pattern in the OpenAPI document names the characters instead of saying \s or \S.
SPACE = r"\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# At least one character that is not whitespace (Unicode whitespace too, as str.strip sees it).
NOT_BLANK = rf"[^{SPACE}]"
BLANK = "must not be blank"


def name_meta(max_length: int) -> msgspec.Meta:
    """The constraints of a name field: ``Annotated[str, name_meta(200)]``. A name of only
    whitespace is a 422 on the field; services save ``name.strip()``."""
    return msgspec.Meta(
        min_length=1,
        max_length=max_length,
        pattern=NOT_BLANK,
        description=f"Up to {max_length} characters, not all whitespace; saved trimmed",
    )
