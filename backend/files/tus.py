"""The tus 1.0 words a resumable upload is made of (docs/files.md): where an upload goes, read
from and written to ``Upload-Metadata``, and where it stands after a request."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from backend.errors import invalid_field
from backend.files.models import FileUpload


@dataclass(frozen=True, slots=True)
class Target:
    collection: str
    record_id: UUID
    field: str
    filename: str


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an upload stands after a PATCH; ``name`` once it is finished into its field."""

    offset: int
    expires_at: datetime
    name: str | None = None


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata: key base64value,key2 base64value`` → a dict (values decoded)."""
    values: dict[str, str] = {}
    for pair in (header or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_field(
                f"Upload-Metadata: {key}'s value is not base64 of UTF-8 text",
                "Upload-Metadata",
                f"{key} is not base64",
                "header",
            ) from None
    return values


def target_of(metadata: dict[str, str]) -> Target:
    missing = [
        key for key in ("collection", "record", "field", "filename") if not metadata.get(key)
    ]
    if missing:
        raise invalid_field(
            f"Upload-Metadata names the file's target: {', '.join(missing)} missing",
            "Upload-Metadata",
            f"{', '.join(missing)} missing",
            "header",
        )
    try:
        record_id = UUID(metadata["record"])
    except ValueError:
        raise invalid_field(
            "Upload-Metadata: record is a record's id (a UUID)",
            "Upload-Metadata",
            "record is not a UUID",
            "header",
        ) from None
    return Target(metadata["collection"], record_id, metadata["field"], metadata["filename"])


def metadata_of(upload: FileUpload) -> str:
    """The upload's target as Upload-Metadata (HEAD answers it)."""
    values = {
        "collection": upload.collection,
        "record": str(upload.record_id),
        "field": upload.field,
        "filename": upload.name,
    }
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items()
    )
