"""notes: private by default, shareable with `public`; title, body and the text of attached
documents are embedded for search; attachments (PDFs and images) readable by whoever may view
the note (docs/files.md)."""

from __future__ import annotations

from sqlalchemy import ARRAY, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.collections.files import file_field
from backend.collections.spec import Collection, CollectionModel, Embed, Rules


class Note(CollectionModel):
    __tablename__ = "notes"

    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(50)), default=list, server_default="{}")
    attachments: Mapped[list[str]] = file_field(
        max_size="20MB",
        mime=["application/pdf", "image/*"],
        max_files=10,
        thumbs=["100x100", "640x0"],
        protected=True,
    )


notes = Collection(
    model=Note,
    rules=Rules(
        list="owner = @auth.id || public = true",
        view="owner = @auth.id || public = true",
        create="@auth.id != null",
        update="owner = @auth.id",
        delete="owner = @auth.id",
    ),
    embed=Embed(fields=["title", "body"], chunk_size=800, chunk_overlap=100, files=["attachments"]),
)
