"""Types for clients, written from the collection registry: `litebase gen types`.

TypeScript gets a `Database` type that `createClient<Database>()` (clients/js) is generic over:
each collection's record as read (`Row`), the body that creates one (`Insert`: required fields
required, the server's own fields and file fields absent: files come by multipart), the body
that changes one (`Update`: every writable
field optional) and its relations to other collections (`Relations`, for `expand`). Python gets
TypedDicts of the same three shapes for the Python client.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Iterable

from backend.collections.spec import Collection, CollectionRegistry, FieldSpec

HEADER = "Written by `litebase gen types` from the collection registry: do not edit, run it again."

_TS_KINDS = {
    "text": "string",
    "integer": "number",
    "number": "number",
    "bool": "boolean",
    "uuid": "string",
    "datetime": "string",
    "text_list": "string[]",
    "json": "unknown",
}
_PY_KINDS = {
    "text": "str",
    "integer": "int",
    "number": "float",
    "bool": "bool",
    "uuid": "str",
    "datetime": "str",
    "text_list": "list[str]",
    "json": "Any",
}


def relations_of(collection: Collection, registry: CollectionRegistry) -> dict[str, str]:
    """Relation fields that point at another collection (what `expand` takes): field → name."""
    by_table = {str(c.table.name): c.name for c in registry}
    return {
        spec.name: by_table[spec.relation]
        for spec in collection.fields.values()
        if spec.relation is not None and spec.relation in by_table
    }


def _insertable(specs: Iterable[FieldSpec]) -> list[FieldSpec]:
    """A create's JSON names no files (they come as multipart parts, docs/files.md)."""
    return [spec for spec in specs if spec.file is None]


def _ts_value(spec: FieldSpec) -> str:
    value = (
        " | ".join(json.dumps(choice) for choice in spec.choices)
        if spec.choices
        else _TS_KINDS[spec.kind]
    )
    return f"{value} | null" if spec.nullable else value


def _ts_fields(specs: Iterable[FieldSpec], optional: bool | None) -> str:
    """One object type; optional=None: a field is optional unless the create requires it."""
    lines = []
    for spec in specs:
        mark = "?" if optional or (optional is None and not spec.required_on_create) else ""
        lines.append(f"        {json.dumps(spec.name)}{mark}: {_ts_value(spec)};")
    return "{\n" + "\n".join(lines) + "\n      }" if lines else "{}"


def typescript(registry: CollectionRegistry) -> str:
    out = [f"// {HEADER}", "", "export interface Database {", "  collections: {"]
    for collection in sorted(registry, key=lambda c: c.name):
        specs = list(collection.fields.values())
        writable = [s for s in specs if not s.read_only]
        relations = relations_of(collection, registry)
        out += [
            f"    {json.dumps(collection.name)}: {{",
            f"      Row: {_ts_fields(specs, optional=False)};",
            f"      Insert: {_ts_fields(_insertable(writable), optional=None)};",
            f"      Update: {_ts_fields(writable, optional=True)};",
            "      Relations: {"
            + "".join(f" {json.dumps(k)}: {json.dumps(v)};" for k, v in relations.items())
            + " };",
            "    };",
        ]
    out += ["  };", "}", ""]
    names = sorted(c.name for c in registry)
    union = " | ".join(json.dumps(n) for n in names) or "never"
    out.append(f"export type CollectionName = {union};")
    return "\n".join(out) + "\n"


def _py_class_prefix(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _py_value(spec: FieldSpec) -> str:
    value = (
        "Literal[" + ", ".join(json.dumps(choice) for choice in spec.choices) + "]"
        if spec.choices
        else _PY_KINDS[spec.kind]
    )
    return f"{value} | None" if spec.nullable else value


def _py_typed_dict(name: str, specs: list[FieldSpec], optional: bool | None) -> list[str]:
    if any(not s.name.isidentifier() or keyword.iskeyword(s.name) for s in specs):
        fields = ", ".join(f"{json.dumps(s.name)}: {_py_value(s)}" for s in specs)
        return [f"{name} = TypedDict({json.dumps(name)}, {{{fields}}}, total={not optional})", ""]
    lines = [f"class {name}(TypedDict{', total=False' if optional is not False else ''}):"]
    for spec in specs:
        value = _py_value(spec)
        if optional is None and spec.required_on_create:
            value = f"Required[{value}]"
        lines.append(f"    {spec.name}: {value}")
    if not specs:
        lines.append("    pass")
    return [*lines, "", ""]


def python(registry: CollectionRegistry) -> str:
    out = [
        f'"""{HEADER}"""',
        "",
        # No `from __future__ import annotations`: TypedDict reads Required[...] at run time.
        "from typing import Any, Literal, Required, TypedDict",
        "",
    ]
    relations: dict[str, dict[str, str]] = {}
    for collection in sorted(registry, key=lambda c: c.name):
        prefix = _py_class_prefix(collection.name)
        specs = list(collection.fields.values())
        writable = [s for s in specs if not s.read_only]
        out += _py_typed_dict(f"{prefix}Row", specs, optional=False)
        out += _py_typed_dict(f"{prefix}Insert", _insertable(writable), optional=None)
        out += _py_typed_dict(f"{prefix}Update", writable, optional=True)
        relations[collection.name] = relations_of(collection, registry)
    names = sorted(c.name for c in registry)
    out.append("CollectionName = Literal[" + ", ".join(json.dumps(n) for n in names) + "]")
    out.append("# Relation fields to other collections (what `expand` takes), by collection.")
    out.append(f"RELATIONS: dict[str, dict[str, str]] = {json.dumps(relations)}")
    return "\n".join(out) + "\n"
