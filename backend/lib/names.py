"""Names people give things (themselves, orgs, API keys): never blank, trimmed when saved."""

from __future__ import annotations

import msgspec

# At least one character that is not whitespace (Unicode whitespace too, as str.strip sees it).
NOT_BLANK = r"\S"
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
