"""`litebase new collection`: write a collection module, its migration and a test.

    litebase new collection tasks --field title:str --field done:bool --field due:datetime?

Field types: str (up to 200 characters), text, int, float, bool, uuid, datetime, tags (a list
of short strings), json. A trailing ``?`` makes the field optional (nullable). The collection
gets owner-only rules; edit them in the written module.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
RESERVED = frozenset(
    {"id", "owner", "org", "created_at", "updated_at", "sa_orm_sentinel", "users", "orgs", "outbox"}
)


@dataclass(frozen=True)
class FieldType:
    python: str  # the Mapped[...] annotation
    model_column: str  # arguments to mapped_column(...)
    migration_type: str  # the sa type in the migration
    imports: tuple[str, ...]  # names from sqlalchemy the model needs
    example: str  # a Python literal for the test


FIELD_TYPES = {
    "str": FieldType("str", "String(200)", "sa.String(length=200)", ("String",), '"a value"'),
    "text": FieldType("str", "Text", "sa.Text()", ("Text",), '"some text"'),
    "int": FieldType("int", "Integer", "sa.Integer()", ("Integer",), "7"),
    "float": FieldType("float", "Float", "sa.Float()", ("Float",), "1.5"),
    "bool": FieldType("bool", "Boolean", "sa.Boolean()", ("Boolean",), "True"),
    "uuid": FieldType(
        "UUID", "Uuid", "sa.Uuid()", ("Uuid",), '"00000000-0000-0000-0000-000000000001"'
    ),
    "datetime": FieldType(
        "datetime",
        "DateTime(timezone=True)",
        "sa.DateTime(timezone=True)",
        ("DateTime",),
        '"2026-01-01T00:00:00Z"',
    ),
    "tags": FieldType(
        "list[str]",
        "ARRAY(String(50))",
        "sa.ARRAY(sa.String(length=50))",
        ("ARRAY", "String"),
        '["a", "b"]',
    ),
    "json": FieldType("dict[str, Any]", "JSONB", "postgresql.JSONB()", ("JSONB",), '{"k": 1}'),
}


class ScaffoldError(ValueError):
    """The name or a field is not usable; the message says which and why."""


@dataclass(frozen=True)
class NewField:
    name: str
    type: FieldType
    type_name: str
    optional: bool


def parse_field(text: str) -> NewField:
    name, _, type_name = text.partition(":")
    optional = type_name.endswith("?")
    type_name = type_name.rstrip("?")
    if not _NAME.match(name) or name in RESERVED:
        raise ScaffoldError(f"field name {name!r}: use lower_case, and not {sorted(RESERVED)}")
    if type_name not in FIELD_TYPES:
        raise ScaffoldError(
            f"field {name!r}: type {type_name!r} is not one of {', '.join(FIELD_TYPES)}"
        )
    return NewField(name, FIELD_TYPES[type_name], type_name, optional)


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Record"


def render_module(name: str, fields: list[NewField]) -> str:
    sa_names = sorted({n for f in fields for n in f.type.imports if n != "JSONB"})
    lines = [
        f'"""{name}: made by `litebase new collection`; edit the fields and rules to taste."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    if any(f.type_name == "datetime" for f in fields):
        lines.append("from datetime import datetime")
    if any(f.type_name == "json" for f in fields):
        lines.append("from typing import Any")
    if any(f.type_name == "uuid" for f in fields):
        lines.append("from uuid import UUID")
    if lines[-1] != "":
        lines.append("")
    if sa_names:
        lines.append(f"from sqlalchemy import {', '.join(sa_names)}")
    if any(f.type_name == "json" for f in fields):
        lines.append("from sqlalchemy.dialects.postgresql import JSONB")
    lines += [
        "from sqlalchemy.orm import Mapped, mapped_column",
        "",
        "from backend.collections.spec import Collection, CollectionModel, Rules",
        "",
        "",
        f"class {_class_name(name)}(CollectionModel):",
        f'    __tablename__ = "{name}"',
        "",
    ]
    for f in fields:
        annotation = f"{f.type.python} | None" if f.optional else f.type.python
        extra = ", default=None" if f.optional else ""
        lines.append(
            f"    {f.name}: Mapped[{annotation}] = mapped_column({f.type.model_column}{extra})"
        )
    lines += [
        "",
        "",
        f"{name} = Collection(",
        f"    model={_class_name(name)},",
        "    rules=Rules(",
        '        list="owner = @auth.id",',
        '        view="owner = @auth.id",',
        '        create="@auth.id != null",',
        '        update="owner = @auth.id",',
        '        delete="owner = @auth.id",',
        "    ),",
        ")",
        "",
    ]
    return "\n".join(lines)


def render_migration(
    name: str, fields: list[NewField], revision: str, down_revision: str | None
) -> str:
    columns = [
        f'        sa.Column("{f.name}", {f.type.migration_type}, nullable={f.optional}),'
        for f in fields
    ]
    return "\n".join(
        [
            f'"""Collection {name}: made by `litebase new collection`.',
            "",
            f"Revision ID: {revision}",
            f"Revises: {down_revision or ''}",
            f"Create Date: {datetime.now(UTC).date().isoformat()}",
            '"""',
            "",
            "from collections.abc import Sequence",
            "",
            "import sqlalchemy as sa",
            "from alembic import op",
            "from sqlalchemy.dialects import postgresql",
            "",
            "from backend.db.outbox import attach_outbox_sql, detach_outbox_sql",
            "",
            f'revision: str = "{revision}"',
            f"down_revision: str | None = {down_revision!r}".replace("'", '"'),
            "branch_labels: str | Sequence[str] | None = None",
            "depends_on: str | Sequence[str] | None = None",
            "",
            "",
            "def upgrade() -> None:",
            "    op.create_table(",
            f'        "{name}",',
            *columns,
            '        sa.Column("id", sa.Uuid(), nullable=False),',
            '        sa.Column("owner", sa.Uuid(), nullable=True),',
            '        sa.Column("org", sa.Uuid(), nullable=True),',
            '        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),',
            '        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),',
            "        sa.ForeignKeyConstraint(",
            f'            ["org"], ["orgs.id"], name=op.f("fk_{name}_org_orgs"),',
            '            ondelete="CASCADE",',
            "        ),",
            "        sa.ForeignKeyConstraint(",
            f'            ["owner"], ["users.id"], name=op.f("fk_{name}_owner_users"),',
            # The owner-only rules read owner, so the rows go with their owner's account
            # (on_owner_delete="delete"); set "keep" on the Collection and SET NULL here to
            # keep them.
            '            ondelete="CASCADE",',
            "        ),",
            f'        sa.PrimaryKeyConstraint("id", name=op.f("pk_{name}")),',
            "    )",
            *(
                f'    op.create_index(op.f("ix_{name}_{column}"), "{name}", ["{column}"])'
                for column in ("created_at", "org", "owner")
            ),
            f'    op.execute(attach_outbox_sql("{name}"))',
            "",
            "",
            "def downgrade() -> None:",
            f'    op.execute(detach_outbox_sql("{name}"))',
            f'    op.drop_table("{name}")',
            "",
        ]
    )


def render_test(name: str, fields: list[NewField]) -> str:
    record = "".join(f'    "{f.name}": {f.type.example},\n' for f in fields if not f.optional)
    return f'''"""{name}: made by `litebase new collection`; the owner-only rules, end to end."""

from tests.integration.conftest import bearer

URL = "/collections/{name}/records"
RECORD = {{
{record}}}


async def test_the_owner_creates_reads_and_lists_and_others_see_nothing(client, sign_up):
    owner = bearer((await sign_up())["access_token"])
    other = bearer((await sign_up())["access_token"])
    created = await client.post(URL, json=RECORD, headers=owner)
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    assert (await client.get(f"{{URL}}/{{record_id}}", headers=owner)).status_code == 200
    assert [r["id"] for r in (await client.get(URL, headers=owner)).json()["items"]] == [record_id]
    assert (await client.get(f"{{URL}}/{{record_id}}", headers=other)).status_code == 404
    assert (await client.get(URL, headers=other)).json()["items"] == []
    assert (await client.post(URL, json=RECORD)).status_code == 403
'''


@dataclass(frozen=True)
class Written:
    module: Path
    migration: Path
    test: Path


def write_collection(root: Path, name: str, field_specs: list[str], head: str | None) -> Written:
    """Write the three files under ``root`` (the project); refuses to overwrite anything."""
    if not _NAME.match(name) or name in RESERVED:
        raise ScaffoldError(f"collection name {name!r}: use lower_case letters, digits and _")
    if not field_specs:
        raise ScaffoldError("give at least one --field name:type")
    fields = [parse_field(spec) for spec in field_specs]
    if len({f.name for f in fields}) != len(fields):
        raise ScaffoldError("two fields have the same name")
    revision = f"{datetime.now(UTC):%Y%m%d%H%M%S}_{name}"
    written = Written(
        module=root / "backend" / "app_collections" / f"{name}.py",
        migration=root / "backend" / "db" / "migrations" / "versions" / f"{revision}.py",
        test=root / "tests" / "integration" / f"test_collection_{name}.py",
    )
    for path in (written.module, written.test):
        if path.exists():
            raise ScaffoldError(f"{path} already exists")
    written.module.write_text(render_module(name, fields))
    written.migration.write_text(render_migration(name, fields, revision, head))
    written.test.write_text(render_test(name, fields))
    _format(written)
    return written


def _format(written: Written) -> None:
    """Leave the files as `make lint` wants them, when ruff is installed (it is in dev)."""
    with contextlib.suppress(OSError):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "format",
                "--quiet",
                str(written.module),
                str(written.test),
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )
