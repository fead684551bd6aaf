"""API shapes, made per collection from its model: read, create and update bodies, a page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from backend.collections.expressions import Kind
from backend.collections.spec import Collection, FieldSpec

_PYTHON_TYPES: dict[Kind, Any] = {
    "text": str,
    "integer": int,
    "number": float,
    "bool": bool,
    "uuid": UUID,
    "datetime": datetime,
    "text_list": list[str],
    "json": Any,
}


def _type_of(spec: FieldSpec) -> Any:
    base: Any = _PYTHON_TYPES[spec.kind]
    if spec.choices:
        base = Literal[spec.choices]
    elif spec.kind == "text" and spec.max_length:
        base = Annotated[str, msgspec.Meta(max_length=spec.max_length)]
    elif spec.kind == "text_list" and spec.max_length:
        # Litestar's OpenAPI reads constraints off the field, not its items: it takes an
        # element's maxLength from the field's "extra" schema (its schema_extra).
        item = {"type": "string", "maxLength": spec.max_length}
        base = Annotated[
            list[Annotated[str, msgspec.Meta(max_length=spec.max_length)]],
            msgspec.Meta(extra_json_schema={"extra": {"items": item}}),
        ]
    return base | None if spec.nullable else base


@dataclass(frozen=True)
class RecordTypes:
    read: type[msgspec.Struct]
    create: type[msgspec.Struct]
    update: type[msgspec.Struct]
    page: type[msgspec.Struct]


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def record_types(collection: Collection) -> RecordTypes:
    title = _title(collection.name)
    fields = list(collection.fields.values())
    read = msgspec.defstruct(
        f"{title}Record", [(f.name, _type_of(f)) for f in fields], kw_only=True
    )
    writable = [f for f in fields if not f.read_only]
    create = msgspec.defstruct(
        f"{title}Create",
        [
            (f.name, _type_of(f))
            if f.required_on_create
            else (f.name, _type_of(f) | msgspec.UnsetType, msgspec.UNSET)
            # Files come as multipart parts, never as names in JSON (docs/files.md).
            for f in writable
            if f.file is None
        ],
        kw_only=True,
        forbid_unknown_fields=True,
    )
    update = msgspec.defstruct(
        f"{title}Update",
        [(f.name, _type_of(f) | msgspec.UnsetType, msgspec.UNSET) for f in writable],
        kw_only=True,
        forbid_unknown_fields=True,
    )
    page = msgspec.defstruct(
        f"{title}Page",
        [("items", list[read]), ("next_cursor", str | None), ("total", int | None, None)],  # type: ignore[valid-type]
        kw_only=True,
    )
    return RecordTypes(read=read, create=create, update=update, page=page)


def provided(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a create or update body actually carries (UNSET ones are left out)."""
    return {
        name: getattr(body, name)
        for name in body.__struct_fields__
        if getattr(body, name) is not msgspec.UNSET
    }


class BatchOperation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    op: Literal["create", "update", "delete"]
    id: UUID | None = None
    data: dict[str, Any] | None = None
    if_match: str | None = None


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    operations: list[BatchOperation]


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    op: str
    id: UUID
    record: dict[str, Any] | None


class BatchResponse(msgspec.Struct, frozen=True, kw_only=True):
    results: list[BatchResult]


class FileDescription(msgspec.Struct, frozen=True, kw_only=True):
    """What a file field accepts (docs/files.md)."""

    max_size: int
    mime: list[str]
    max_files: int
    thumbs: list[str]
    protected: bool


class FieldDescription(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    nullable: bool
    read_only: bool
    required: bool
    max_length: int | None = None
    choices: list[str] | None = None
    relation: str | None = None
    file: FileDescription | None = None


class CollectionDescription(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    fields: list[FieldDescription]
    realtime: bool
    embed: list[str] | None


def describe(collection: Collection) -> CollectionDescription:
    return CollectionDescription(
        name=collection.name,
        fields=[
            FieldDescription(
                name=f.name,
                kind=f.kind,
                nullable=f.nullable,
                read_only=f.read_only,
                required=f.required_on_create,
                max_length=f.max_length,
                choices=list(f.choices) if f.choices else None,
                relation=f.relation,
                file=FileDescription(
                    max_size=f.file.max_size,
                    mime=list(f.file.mime),
                    max_files=f.file.max_files,
                    thumbs=list(f.file.thumbs),
                    protected=f.file.protected,
                )
                if f.file
                else None,
            )
            for f in collection.fields.values()
        ],
        realtime=collection.realtime,
        embed=list(collection.embed.fields) if collection.embed else None,
    )
