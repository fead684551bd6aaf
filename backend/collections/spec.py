"""Collections: a SQLAlchemy model plus rules, declared in code, found by the registry.

    notes = Collection(
        model=Note,
        rules=Rules(list="owner = @auth.id || public = true", create="@auth.id != null", ...),
        embed=Embed(fields=["title", "body"]),
    )

A rule of ``None`` admits admins and service keys only; ``""`` admits everyone.

``on_owner_delete`` says what becomes of a row when the account that owns it is deleted:
``"delete"`` (the default when a rule reads ``owner``: the rows were that person's, and erasure
takes them) or ``"keep"`` (the default otherwise: the row stays with no owner, which no rule
comparing ``owner`` with ``@auth.id`` admits, so only admins and service keys see it). It is
the owner column's foreign key (ON DELETE CASCADE or SET NULL), so a deletion from SQL obeys
it too; the collection's migration must say the same (tests/integration/test_migrations.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import uuid_utils.compat as uuid_utils
from advanced_alchemy.base import AdvancedDeclarativeBase, CommonTableAttributes
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    Uuid,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeEngine

from backend.collections.expressions import Kind, fields_read, parse
from backend.collections.files import FILE_FIELD_INFO, FileField

READ_ONLY_FIELDS = frozenset({"id", "owner", "org", "created_at", "updated_at"})
# What a rule or filter may read through a relation to users: never password hashes.
USER_FIELDS: dict[str, Kind] = {"id": "uuid", "email": "text", "name": "text"}


def _now() -> datetime:
    return datetime.now().astimezone()


class CollectionModel(CommonTableAttributes, AdvancedDeclarativeBase, AsyncAttrs):
    """Base for collection tables: a UUIDv7 id, owner, org and timestamps the server sets."""

    __abstract__ = True

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid_utils.uuid7)

    @declared_attr
    def owner(cls) -> Mapped[UUID | None]:
        return mapped_column(
            Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True, default=None
        )

    @declared_attr
    def org(cls) -> Mapped[UUID | None]:
        return mapped_column(
            Uuid, ForeignKey("orgs.id", ondelete="CASCADE"), index=True, default=None
        )

    created_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=_now, index=True, sort_order=3002
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=_now, onupdate=_now, sort_order=3003
    )


@dataclass(frozen=True)
class Rules:
    list: str | None = None
    view: str | None = None
    create: str | None = None
    update: str | None = None
    delete: str | None = None


@dataclass(frozen=True)
class Embed:
    """Which text fields feed the collection's embeddings, and how they are cut into chunks
    (characters per chunk, characters shared by neighbours). ``files`` names file fields whose
    documents (PDF, Markdown, HTML, plain text) are embedded too, each file's text chunked on
    its own. See docs/vectors.md and docs/files.md."""

    fields: tuple[str, ...] | list[str]
    chunk_size: int = 800
    chunk_overlap: int = 100
    files: tuple[str, ...] | list[str] = ()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    nullable: bool
    has_default: bool
    read_only: bool
    max_length: int | None = None  # of the string, or of each string in a text_list
    choices: tuple[str, ...] | None = None
    relation: str | None = None  # the table a foreign key points at
    file: FileField | None = None  # a file field's declaration (backend/collections/files.py)

    @property
    def required_on_create(self) -> bool:
        return not (self.read_only or self.nullable or self.has_default or self.file)


def _kind(type_: TypeEngine[Any]) -> Kind:
    if isinstance(type_, Boolean):
        return "bool"
    if isinstance(type_, Integer | BigInteger | SmallInteger):
        return "integer"
    if isinstance(type_, Float | Numeric):
        return "number"
    if isinstance(type_, Uuid):
        return "uuid"
    if isinstance(type_, DateTime | DateTimeUTC):
        return "datetime"
    if isinstance(type_, ARRAY):
        return "text_list"
    if isinstance(type_, JSON | JSONB):
        return "json"
    if isinstance(type_, String | Text | Enum):
        return "text"
    raise TypeError(f"collections do not support columns of type {type_!r} yet")


def _max_length(type_: TypeEngine[Any]) -> int | None:
    """A String(n) column's n; for an ARRAY(String(n)) column, the n of each element."""
    if isinstance(type_, ARRAY):
        type_ = type_.item_type
    return type_.length if isinstance(type_, String) else None


def _field_spec(column: Column[Any]) -> FieldSpec:
    foreign = next(iter(column.foreign_keys), None)
    type_ = column.type
    return FieldSpec(
        name=column.key,
        kind=_kind(type_),
        nullable=bool(column.nullable),
        has_default=column.default is not None or column.server_default is not None,
        read_only=column.key in READ_ONLY_FIELDS,
        max_length=_max_length(type_),
        choices=tuple(type_.enums) if isinstance(type_, Enum) else None,
        relation=foreign.target_fullname.split(".")[0] if foreign is not None else None,
        file=column.info.get(FILE_FIELD_INFO),
    )


OwnerDeletion = Literal["delete", "keep"]
_OWNER_ON_DELETE: dict[OwnerDeletion, str] = {"delete": "CASCADE", "keep": "SET NULL"}
# What each model's owner foreign key was set to, by the first collection declared over it.
_OWNER_DELETION: dict[type[CollectionModel], OwnerDeletion] = {}


def _rules_read_owner(rules: Rules) -> bool:
    for text in (rules.list, rules.view, rules.create, rules.update, rules.delete):
        if text and any(
            f.path[0] == "owner" for f in fields_read(parse(text, max_length=len(text)))
        ):
            return True
    return False


@dataclass
class Collection:
    model: type[CollectionModel]
    rules: Rules = field(default_factory=Rules)
    embed: Embed | None = None
    realtime: bool = True
    name: str = ""
    on_owner_delete: OwnerDeletion | None = None  # None: "delete" when a rule reads owner
    fields: dict[str, FieldSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.name or str(self.model.__tablename__)
        self.on_owner_delete = self._owner_deletion()
        columns: list[Column[Any]] = list(self.table.columns)
        self.fields = {c.key: _field_spec(c) for c in columns if c.key != "sa_orm_sentinel"}
        if self.embed is not None:
            wrong = [
                f
                for f in self.embed.fields
                if self.fields.get(f, None) is None or self.fields[f].kind != "text"
            ]
            if wrong or not self.embed.fields:
                raise ValueError(
                    f"{self.name}: Embed(fields=...) must name text fields of the collection"
                    f" (not {', '.join(wrong) or 'none'})"
                )
            not_files = [f for f in self.embed.files if f not in self.file_fields]
            if not_files:
                raise ValueError(
                    f"{self.name}: Embed(files=...) must name file fields of the collection"
                    f" (not {', '.join(not_files)})"
                )
            if not 0 <= self.embed.chunk_overlap < self.embed.chunk_size:
                raise ValueError(f"{self.name}: Embed needs 0 <= chunk_overlap < chunk_size")

    def _owner_deletion(self) -> OwnerDeletion:
        """The model's owner foreign key carries the choice (before any DDL reads it). The
        first collection over a model decides; another over the same model (a test's, say)
        takes that choice, and may not contradict it outright."""
        wanted = self.on_owner_delete
        if wanted is not None and wanted not in _OWNER_ON_DELETE:
            raise ValueError(f"{self.name}: on_owner_delete is 'delete' or 'keep'")
        decided = _OWNER_DELETION.get(self.model)
        if decided is not None:
            if wanted is not None and wanted != decided:
                raise ValueError(
                    f"{self.name}: {self.model.__name__}'s owner foreign key already says"
                    f" on_owner_delete={decided!r} (the first collection over the model)"
                )
            return decided
        decided = wanted or ("delete" if _rules_read_owner(self.rules) else "keep")
        _OWNER_DELETION[self.model] = decided
        for key in self.table.c.owner.foreign_keys:
            key.ondelete = _OWNER_ON_DELETE[decided]
            if key.constraint is not None:
                key.constraint.ondelete = key.ondelete
        return decided

    @property
    def table(self) -> Any:
        return self.model.__table__

    @property
    def file_fields(self) -> dict[str, FileField]:
        """The collection's file fields and what each accepts."""
        return {name: f.file for name, f in self.fields.items() if f.file is not None}

    # FieldTypes / SqlFields, for the expression compilers

    def kind_of(self, path: tuple[str, ...]) -> Kind | None:
        spec = self.fields.get(path[0])
        if spec is None:
            return None
        if len(path) == 1:
            return spec.kind
        if spec.relation == "users":
            return USER_FIELDS.get(path[1])
        return None

    def column(self, path: tuple[str, ...]) -> ColumnElement[Any]:
        local: ColumnElement[Any] = self.table.c[path[0]]
        if len(path) == 1:
            return local
        from backend.auth.models import User  # the one relation target collections may read

        target = getattr(User, path[1])
        return select(target).where(User.id == local).scalar_subquery()

    def sql_type(self, path: tuple[str, ...]) -> TypeEngine[Any]:
        if len(path) == 1:
            column_type: TypeEngine[Any] = self.table.c[path[0]].type
            return column_type
        return Uuid() if USER_FIELDS.get(path[1]) == "uuid" else Text()


class CollectionRegistry:
    """The collections an app serves, by name."""

    def __init__(self, collections: Iterable[Collection]) -> None:
        self._by_name: dict[str, Collection] = {}
        for collection in collections:
            if collection.name in self._by_name:
                raise ValueError(f"two collections are named {collection.name!r}")
            self._by_name[collection.name] = collection

    def __iter__(self) -> Iterator[Collection]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Collection | None:
        return self._by_name.get(name)

    @classmethod
    def discover(cls, package: str = "backend.app_collections") -> CollectionRegistry:
        """Every Collection defined at module level in ``package``'s modules, in name order."""
        found: list[Collection] = []
        root = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{package}.{info.name}")
            found += [v for v in vars(module).values() if isinstance(v, Collection)]
        return cls(found)
