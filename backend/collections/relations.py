"""Which records a written relation may point at (issue 18.16 and 18.7).

A relation field a caller writes must point at a record that caller may view: a task cannot
be filed under another org's project, or the answers (refused, accepted) would tell whether it
exists and the task would show its id to the other org. A relation to a user must name a
member of the record's org (a personal record's: the caller), so nobody can pin records on,
or learn ids of, strangers. Admins and service keys write what they like.

Each check is one SQL boolean, so the API (asyncpg through the ORM) and the import worker
(psycopg) run the same thing, in one query for every written relation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import ColumnElement, exists, literal, select

from backend.auth.models import OrgMember
from backend.collections.compile import AuthContext
from backend.collections.spec import Collection
from backend.errors import Invalid

if TYPE_CHECKING:
    from backend.collections.rules import CompiledRules


def relation_checks(
    collection: Collection,
    rules: Mapping[str, CompiledRules],
    values: Mapping[str, Any],
    auth: AuthContext,
    org: UUID | None,
    now: datetime,
) -> dict[str, ColumnElement[bool]]:
    """For each relation field in ``values`` that points somewhere: a condition true when the
    caller ``auth`` may point it there. ``org``: the org of the record written."""
    targets = {compiled.collection.table.name: compiled for compiled in rules.values()}
    checks: dict[str, ColumnElement[bool]] = {}
    for name, value in values.items():
        field = collection.fields.get(name)
        if field is None or field.relation is None or value is None:
            continue
        if field.relation == "users":
            if org is None:
                checks[name] = literal(value == auth.id)
            else:
                checks[name] = exists(
                    select(OrgMember.id).where(OrgMember.user_id == value, OrgMember.org_id == org)
                )
            continue
        target = targets.get(field.relation)
        if target is None:
            continue  # a table no collection serves: its foreign key is the only check
        table = target.collection.table
        view = target.clause("view", auth, now)
        checks[name] = exists(select(table.c.id).where(table.c.id == value, view))
    return checks


def unviewable_relations(checks: Mapping[str, ColumnElement[bool]], passed: Any) -> Invalid | None:
    """The 422 for the checks that did not pass (``passed``: the row of their results, in
    order), or None. A missing record and a hidden one get the same answer."""
    failed = [name for name, ok in zip(checks, passed, strict=True) if not ok]
    if not failed:
        return None
    return Invalid(
        f"{', '.join(failed)} must point at a record you may view",
        errors=[
            {"field": name, "message": "no such record you may view", "source": "body"}
            for name in failed
        ],
    )
