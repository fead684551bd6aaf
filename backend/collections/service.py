"""Records: list, read, create, update, delete and batch, under each collection's rules.

A row a caller may not view is 404 on view, update and delete (never 403, never a hint that
it exists); a row they may view but not change is 403. Rules and client filters compile to one
parameterized WHERE clause. Lists page with a keyset cursor, stable while rows are inserted.

This module writes (``RecordService``: create, update, delete, batch, in an ORM session);
reads are in reading.py (``RecordReads``, through the asyncpg reader), the compiled rules in
rules.py, where a written relation may point in relations.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.collections.reading import RecordReads, Row, etag_of, values_of
from backend.collections.reads import Reader
from backend.collections.relations import relation_checks, unviewable_relations
from backend.collections.rules import CompiledRules, auth_context
from backend.collections.spec import Collection, CollectionModel
from backend.config import Settings
from backend.errors import DomainError, Forbidden, Invalid, NotFound, Stale
from backend.identity import Principal
from backend.lib.clock import Clock

log = logging.getLogger(__name__)


class RecordService(RecordReads):
    """Reads, and the writes (create, update, delete, batch) through an ORM session."""

    def __init__(
        self,
        db: AsyncSession,
        reader: Reader,
        settings: Settings,
        clock: Clock,
        rules: dict[str, CompiledRules],
    ) -> None:
        super().__init__(reader, settings, clock, rules)
        self.db = db

    async def _visible(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        *,
        for_update: bool = False,
    ) -> CollectionModel:
        statement = select(collection.model).where(
            collection.table.c.id == record_id, self.rule(collection, "view", principal)
        )
        if for_update:
            statement = statement.with_for_update()
        row = await self.db.scalar(statement)
        if row is None:
            raise NotFound(f"No such record in {collection.name}", code="not_found")
        return row

    async def _admits(
        self, collection: Collection, action: str, principal: Principal | None, record_id: UUID
    ) -> bool:
        found = await self.db.scalar(
            select(collection.table.c.id).where(
                collection.table.c.id == record_id, self.rule(collection, action, principal)
            )
        )
        return found is not None

    # --- writing ---------------------------------------------------------------------------

    async def _check_relations(
        self,
        collection: Collection,
        principal: Principal | None,
        values: Mapping[str, Any],
        org: UUID | None,
    ) -> None:
        """422 if a written relation points at a record the caller may not view."""
        if principal is not None and principal.bypasses_rules:
            return
        checks = relation_checks(
            collection, self.rules, values, auth_context(principal), org, self.clock.now()
        )
        if checks:
            passed = (await self.db.execute(select(*checks.values()))).one()
            problem = unviewable_relations(checks, passed)
            if problem is not None:
                raise problem

    async def _create(
        self,
        collection: Collection,
        principal: Principal | None,
        data: dict[str, Any],
        files: Mapping[str, list[str]] | None = None,
        record_id: UUID | None = None,
    ) -> CollectionModel:
        data = {**data, **with_files(collection, {}, data, files)}
        if record_id is not None:  # chosen before its files were stored under it
            data["id"] = record_id
        await self._check_relations(
            collection, principal, data, principal.org_id if principal else None
        )
        row = collection.model(
            **data,
            owner=principal.user_id if principal else None,
            org=principal.org_id if principal else None,
        )
        self.db.add(row)
        await self._flush(collection)
        await self.db.refresh(row)  # columns the database filled in (server defaults)
        if not await self._admits(collection, "create", principal, row.id):
            raise Forbidden(
                f"You may not create this record in {collection.name}", code="forbidden"
            )
        return row

    async def _update(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        changes: dict[str, Any],
        if_match: str | None,
        files: Mapping[str, list[str]] | None = None,
    ) -> CollectionModel:
        row = await self._lock_to_change(collection, principal, record_id, "update", if_match)
        current = {name: list(getattr(row, name)) for name in collection.file_fields}
        changes = {**changes, **with_files(collection, current, changes, files)}
        await self._check_relations(collection, principal, changes, row.org)
        for name, value in changes.items():
            setattr(row, name, value)
        # Strictly later than before, so the ETag changes with every update.
        row.updated_at = max(self.clock.now(), row.updated_at + timedelta(microseconds=1))
        await self._flush(collection)
        return row

    async def _delete(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        if_match: str | None,
    ) -> CollectionModel:
        row = await self._lock_to_change(collection, principal, record_id, "delete", if_match)
        await self.db.delete(row)
        await self._flush(collection)
        return row

    async def _lock_to_change(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        action: str,
        if_match: str | None,
    ) -> CollectionModel:
        """The row, locked: 404 if hidden, 403 if the rule for ``action`` refuses, 412 if stale."""
        row = await self._visible(collection, principal, record_id, for_update=True)
        if not await self._admits(collection, action, principal, record_id):
            raise Forbidden(
                f"You may not {action} this record in {collection.name}", code="forbidden"
            )
        self._check_precondition(collection, row, if_match)
        return row

    @staticmethod
    def _check_precondition(
        collection: Collection, row: CollectionModel, if_match: str | None
    ) -> None:
        etag = etag_of(values_of(collection, row))
        if if_match is not None and if_match.strip() not in ("*", etag):
            raise Stale(
                "The record changed since you read it (If-Match does not match its ETag)",
                code="precondition_failed",
                headers={"ETag": etag},
            )

    async def _flush(self, collection: Collection) -> None:
        try:
            await self.db.flush()
        except IntegrityError as exc:
            raise self._integrity_problem(collection, exc) from None
        except DBAPIError as exc:
            # The database's own words (types, values, internals) go to the log, not the caller.
            log.warning("the database refused a write to %s: %s", collection.name, exc.orig)
            raise Invalid(
                "The database refused the values (one is out of its column's range or form)"
            ) from None

    @staticmethod
    def _integrity_problem(collection: Collection, exc: IntegrityError) -> Invalid:
        constraint = str(getattr(exc.orig, "constraint_name", None) or "a constraint")
        field = next(
            (name for name in collection.fields if f"_{name}_" in f"{constraint}_"), "body"
        )
        return Invalid(
            f"The record breaks a constraint ({constraint})",
            errors=[
                {
                    "field": field,
                    "message": "refers to a record that does not exist, or conflicts",
                    "source": "body",
                }
            ],
        )

    async def create(
        self,
        collection: Collection,
        principal: Principal | None,
        data: dict[str, Any],
        files: Mapping[str, list[str]] | None = None,
        record_id: UUID | None = None,
    ) -> Row:
        """A new record; ``files``: names of files already stored under ``record_id``."""
        row = await self._create(collection, principal, data, files, record_id)
        values = values_of(collection, row)
        await self.db.flush()
        return values

    async def update(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        changes: dict[str, Any],
        if_match: str | None,
        files: Mapping[str, list[str]] | None = None,
    ) -> Row:
        """Change a record; ``files``: names of files just stored under it, added to its
        file fields after the names ``changes`` keeps."""
        row = await self._update(collection, principal, record_id, changes, if_match, files)
        values = values_of(collection, row)
        await self.db.flush()
        return values

    async def delete(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        if_match: str | None,
    ) -> None:
        await self._delete(collection, principal, record_id, if_match)
        await self.db.flush()

    async def batch(
        self,
        collection: Collection,
        principal: Principal | None,
        operations: Sequence[tuple[str, UUID | None, dict[str, Any], str | None]],
    ) -> list[tuple[str, Row]]:
        """All operations in one transaction: all of them happen, or none."""
        done: list[tuple[str, Row]] = []
        for index, (op, record_id, data, if_match) in enumerate(operations):
            try:
                if op == "create":
                    row = await self._create(collection, principal, data)
                    done.append((op, values_of(collection, row)))
                elif record_id is None:
                    raise Invalid(
                        f"{op} needs an id",
                        errors=[{"field": "id", "message": "required", "source": "body"}],
                    )
                elif op == "update":
                    row = await self._update(collection, principal, record_id, data, if_match)
                    done.append((op, values_of(collection, row)))
                else:
                    row = await self._delete(collection, principal, record_id, if_match)
                    done.append((op, values_of(collection, row)))
            except DomainError as problem:  # nothing of the batch is kept
                raise _in_operation(problem, index) from None
        await self.db.flush()
        return done

    def now(self) -> datetime:
        return self.clock.now()


def with_files(
    collection: Collection,
    current: Mapping[str, list[str]],
    changes: Mapping[str, Any],
    added: Mapping[str, list[str]] | None,
) -> dict[str, list[str]]:
    """The file fields' new values: the names ``changes`` keeps (only names the record holds:
    a name in JSON removes or reorders, it never adds), then the files just stored. 422 naming
    the field past its ``max_files``."""
    values: dict[str, list[str]] = {}
    for name, spec in collection.file_fields.items():
        held = current.get(name, [])
        kept = changes.get(name, held)
        unknown = [n for n in kept if n not in held]
        if unknown or len(set(kept)) != len(kept):
            raise Invalid(
                f"{name} may only keep files the record holds; upload new ones as"
                " multipart/form-data parts",
                errors=[
                    {
                        "field": name,
                        "message": "names a file the record does not hold, or one twice",
                        "source": "body",
                    }
                ],
            )
        new = list(kept) + list((added or {}).get(name, []))
        if len(new) > spec.max_files:
            raise Invalid(
                f"{name} holds at most {spec.max_files} files",
                errors=[
                    {
                        "field": name,
                        "message": f"more than {spec.max_files} files",
                        "source": "body",
                    }
                ],
            )
        if name in changes or (added and name in added):
            values[name] = new
    return values


def _in_operation(error: DomainError, index: int) -> DomainError:
    """Point a failed operation's refusal at ``operations[index]``; nothing was written."""
    errors = [dict(e) for e in error.errors or ()] or [
        {"field": "", "message": error.detail, "source": "body"}
    ]
    for item in errors:
        inner = item.get("field") or ""
        item["field"] = f"operations[{index}]" + (f".{inner}" if inner else "")
    return error.moved(f"Operation {index} failed, so none were applied: {error.detail}", errors)
