"""What a record is embedded from, how it is cut into chunks, and what names a version.

A record's source text is its embedded fields joined by a blank line (a missing value counts as
empty). The same text is built in SQL (``source_hash_sql``) so the embedding status can tell
which records changed since they were embedded, however they were written.

Chunks come from semantic-text-splitter (a maintained Rust splitter): it cuts at the largest
semantic unit that fits (paragraph, sentence, word) up to ``chunk_size`` characters, with
``chunk_overlap`` characters shared between neighbours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from typing import Any

from semantic_text_splitter import TextSplitter

from backend.db.outbox import _checked_identifier
from backend.vectors.embedders import ModelChoice

SEPARATOR = "\n\n"


@dataclass(frozen=True)
class EmbedVersion:
    """Everything that decides a collection's vectors; its hash names the version."""

    provider: str
    model: str
    dimensions: int
    fields: tuple[str, ...]
    chunk_size: int
    chunk_overlap: int
    files: tuple[str, ...] = ()  # file fields whose documents are embedded too

    @classmethod
    def of(
        cls,
        choice: ModelChoice,
        fields: Sequence[str],
        size: int,
        overlap: int,
        files: Sequence[str] = (),
    ) -> EmbedVersion:
        return cls(
            choice.provider,
            choice.model,
            choice.dimensions,
            tuple(fields),
            size,
            overlap,
            tuple(files),
        )

    @property
    def choice(self) -> ModelChoice:
        return ModelChoice(self.provider, self.model, self.dimensions)

    @cached_property
    def version(self) -> str:
        # Kept on the instance (the fields are frozen): search names the version a few times
        # per request, and this is a JSON dump and a SHA-256 each time.
        described = asdict(self)
        if not self.files:  # versions named before files could be embedded keep their name
            del described["files"]
        canonical = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def model_label(self) -> str:
        """What a chunk's ``model`` column holds: vectors with equal labels are interchangeable."""
        return f"{self.provider}:{self.model}@{self.dimensions}"


def source_text(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    return SEPARATOR.join(str(record.get(name) or "") for name in fields)


def text_hash(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def source_hash_sql(fields: Sequence[str], alias: str = "r") -> str:
    """SQL for ``text_hash(source_text(record, fields))`` over the row ``alias``."""
    parts = ", ".join(f"coalesce({alias}.{_checked_identifier(name)}::text, '')" for name in fields)
    return f"md5(concat_ws(E'\\n\\n', {parts}))"


@lru_cache(maxsize=32)
def _splitter(size: int, overlap: int) -> TextSplitter:
    return TextSplitter(capacity=size, overlap=min(overlap, size - 1), trim=True)


def chunk(text: str, size: int, overlap: int) -> list[str]:
    """The text's chunks, in order; an empty text has none."""
    if not text.strip():
        return []
    return list(_splitter(size, overlap).chunks(text))
