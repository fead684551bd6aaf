"""nul_fields names every string or key holding a NUL the way validation errors name fields."""

from __future__ import annotations

import pytest

from backend.inputs import nul_fields


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        ({"title": "fine", "body": "a\x00"}, ["body"]),
        (
            {"operations": [{"data": {"title": "ok"}}, {"data": {"title": "\x00"}}]},
            ["operations[1].data.title"],
        ),
        ({"input": {"k\x00": "v\x00"}}, ["input.k\\u0000", "input.k\\u0000"]),
        (["\x00", 1, None, True, 2.5], ["[0]"]),
        ("\x00", ["body"]),
        ({"title": "C:\\u0000 is text"}, []),
        (None, []),
    ],
)
def test_nul_fields(value, fields):
    assert list(nul_fields(value)) == fields
