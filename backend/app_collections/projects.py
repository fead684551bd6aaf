"""projects and their tasks: shared by everyone in the org that owns them; a project's cover
image is public (served to anyone holding its URL, for a public page: docs/files.md)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Enum, ForeignKey, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from backend.collections.files import file_field
from backend.collections.spec import Collection, CollectionModel, Rules

SAME_ORG = "org = @auth.org"
IN_AN_ORG = "@auth.org != null"


class Project(CollectionModel):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    cover: Mapped[list[str]] = file_field(
        max_size="2MB", mime=["image/png", "image/jpeg", "image/webp"], thumbs=["320x180"]
    )


class Task(CollectionModel):
    __tablename__ = "tasks"

    project: Mapped[UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(
        Enum("todo", "doing", "done", name="task_status", native_enum=False, length=10),
        default="todo",
        server_default="todo",
    )
    assignee: Mapped[UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


org_rules = Rules(list=SAME_ORG, view=SAME_ORG, create=IN_AN_ORG, update=SAME_ORG, delete=SAME_ORG)

projects = Collection(model=Project, rules=org_rules)
tasks = Collection(model=Task, rules=org_rules)
