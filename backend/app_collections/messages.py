"""messages: a chat room's history, readable by the org; `owner` is the author."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.collections.spec import Collection, CollectionModel, Rules


class Message(CollectionModel):
    __tablename__ = "messages"

    room: Mapped[str] = mapped_column(String(100), index=True)
    body: Mapped[str] = mapped_column(Text)


messages = Collection(
    model=Message,
    rules=Rules(
        list="org = @auth.org",
        view="org = @auth.org",
        create="@auth.org != null",
        update="owner = @auth.id",
        delete="owner = @auth.id",
    ),
)
