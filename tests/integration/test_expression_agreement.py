"""Property: the SQL compiler and the Python compiler admit exactly the same records.

Random expressions over every field kind are run both ways against random records: as a
WHERE clause in real Postgres, and as a predicate over the same rows in Python.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    create_engine,
    select,
)

from backend.collections.compile import AuthContext, to_predicate, to_sql
from backend.collections.expressions import check, parse
from backend.collections.spec import _kind
from backend.lib.urls import sync_database_url

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text),
    Column("n", Integer),
    Column("x", Float),
    Column("flag", Boolean),
    Column("tags", ARRAY(Text)),
    Column("ref", Uuid),
    Column("at", DateTime(timezone=True)),
)


class ThingFields:
    def kind_of(self, path):
        return _kind(things.c[path[0]].type) if len(path) == 1 and path[0] in things.c else None

    def column(self, path):
        return things.c[path[0]]

    def sql_type(self, path):
        return things.c[path[0]].type


IDS = [UUID(int=1), UUID(int=2), UUID(int=3)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMES = [T0, T0 + timedelta(hours=1), T0 + timedelta(days=2)]
NOW = T0 + timedelta(hours=2)
WORDS = ["", "a", "ab", "B", "ba", "x_y", "50%", "A\\b"]

records = st.fixed_dictionaries(
    {
        "title": st.none() | st.sampled_from(WORDS),
        "n": st.none() | st.integers(-3, 3),
        "x": st.none() | st.sampled_from([-1.5, 0.0, 0.5, 2.0]),
        "flag": st.none() | st.booleans(),
        "tags": st.none() | st.lists(st.sampled_from(WORDS), max_size=3),
        "ref": st.none() | st.sampled_from(IDS),
        "at": st.none() | st.sampled_from(TIMES),
    }
)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


LITERALS = {
    "title": st.sampled_from(WORDS).map(_quote) | st.just("null"),
    "n": st.integers(-4, 4).map(str) | st.sampled_from(["1.5", "-0.5", "null"]),
    "x": st.sampled_from(["0", "0.5", "-1.5", "2", "null"]),
    "flag": st.sampled_from(["true", "false", "null", "@auth.anonymous"]),
    "ref": st.sampled_from([_quote(str(i)) for i in IDS] + ["@auth.id", "@auth.org", "null"]),
    "at": st.sampled_from([_quote(t.isoformat()) for t in TIMES] + ["@now", "null"]),
}
OPS = {
    "title": ["=", "!=", "<", ">=", "~", "!~"],
    "n": ["=", "!=", ">", ">=", "<", "<="],
    "x": ["=", "!=", ">", "<="],
    "flag": ["=", "!="],
    "ref": ["=", "!="],
    "at": ["=", "!=", "<", ">"],
}


@st.composite
def comparisons(draw):
    field = draw(st.sampled_from([*OPS, "tags"]))
    if field == "tags":
        return f"tags ?= {draw(st.sampled_from(WORDS).map(_quote))}"
    op = draw(st.sampled_from(OPS[field]))
    right = draw(LITERALS[field])
    if right == "null" and op not in ("=", "!="):
        op = "="
    if draw(st.booleans()) and field in ("n", "x"):
        right = draw(st.sampled_from(["n", "x"]))  # field against field
    return f"{field} {op} {right}"


expressions = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]} && {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} || {p[1]})"),
        inner.map(lambda e: f"!({e})"),
    ),
    max_leaves=6,
)
auths = st.sampled_from(
    [
        AuthContext(),
        AuthContext(id=IDS[0], role="user", org=IDS[1], anonymous=False),
        AuthContext(id=IDS[2], anonymous=True),
    ]
)


@pytest.fixture(scope="module")
def engine(services):
    with services.fresh_database(migrated=False) as url:
        engine = create_engine(sync_database_url(url))
        metadata.create_all(engine)
        yield engine
        engine.dispose()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(expression=expressions, rows=st.lists(records, min_size=1, max_size=8), auth=auths)
def test_sql_and_python_admit_the_same_records(engine, expression, rows, auth):
    fields = ThingFields()
    node = parse(expression, max_length=10_000)
    check(node, fields)
    where = to_sql(node, fields, auth, NOW)
    predicate = to_predicate(node, fields, auth, NOW)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(things.insert(), [{"id": i, **row} for i, row in enumerate(rows)])
            in_sql = set(conn.scalars(select(things.c.id).where(where)))
        finally:
            transaction.rollback()
    in_python = {i for i, row in enumerate(rows) if predicate(row)}
    assert in_sql == in_python, expression
