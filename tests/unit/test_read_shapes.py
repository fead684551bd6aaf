"""A read compiled once per shape runs the same SQL, with the run's values in place."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select

from backend.app_collections.notes import notes
from backend.collections.reads import _DIALECT, Shape


def test_a_shape_is_the_statement_with_the_values_of_each_run():
    table = notes.table
    owner, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    shape = Shape(
        select(table).where(table.c.id == bindparam("record_id"), table.c.owner == owner),
        ["record_id"],
    )
    direct = (
        select(table).where(table.c.id == first, table.c.owner == owner).compile(dialect=_DIALECT)
    )
    assert shape.sql == direct.string
    assert shape.args({"record_id": first}) == [first, owner]
    assert shape.args({"record_id": second}) == [second, owner]
