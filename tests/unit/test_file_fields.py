"""File fields as declared (backend/collections/files.py), and which names a change releases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from backend.app_collections.notes import notes
from backend.collections.files import file_field, parse_size, thumb_box
from backend.collections.schemas import describe, record_types
from backend.collections.spec import CollectionRegistry
from backend.events.relay import OutboxEvent
from backend.files.cleanup import released_files
from backend.files.names import looks_stored, stored_name
from backend.files.sniff import sniff
from tests.files_support import PDF, pdf_page, png, png_claiming


@pytest.mark.parametrize(
    ("text", "size"),
    [("20MB", 20 * 1024**2), ("500kb", 500 * 1024), ("1GB", 1024**3), ("12", 12), (7, 7)],
)
def test_sizes_read_as_people_write_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "0MB", "20 TB", "-1", "1.5MB", 0])
def test_a_size_that_is_not_one_stops_the_declaration(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_thumb_sizes_allow_one_free_side():
    assert thumb_box("100x100") == (100, 100)
    assert thumb_box("640x0") == (640, 0)
    for wrong in ("0x0", "100", "100x100x1", "axb", "-1x10"):
        with pytest.raises(ValueError, match="thumb"):
            thumb_box(wrong)


@pytest.mark.parametrize(
    "declaration",
    [
        {"mime": ["pdf"]},
        {"mime": ["application/pdf; charset=x"]},
        {"max_files": 0},
        {"thumbs": ["big"]},
        {"max_size": "lots"},
    ],
)
def test_a_wrong_declaration_stops_the_app(declaration):
    with pytest.raises(ValueError):
        file_field(**declaration)


def test_a_field_accepts_its_types_and_families():
    spec = notes.file_fields["attachments"]
    assert spec.accepts("application/pdf") and spec.accepts("image/png")
    assert not spec.accepts("text/html") and not spec.accepts("application/pdfx")
    assert spec.max_size == 20 * 1024**2 and spec.max_files == 10 and spec.protected


def test_a_file_field_is_described_and_never_set_by_a_create():
    described = {f.name: f for f in describe(notes).fields}
    assert described["attachments"].kind == "text_list"
    assert described["attachments"].file.mime == ["application/pdf", "image/*"]
    assert described["attachments"].required is False
    assert described["title"].file is None
    types = record_types(notes)
    assert "attachments" not in types.create.__struct_fields__
    assert "attachments" in types.update.__struct_fields__
    assert "attachments" in types.read.__struct_fields__


def _event(op: str, record: dict | None, old: dict | None) -> OutboxEvent:
    return OutboxEvent(
        id=1,
        collection="notes",
        op=op,
        record_id="r1",
        record=record,
        old=old,
        created_at=datetime.now(UTC),
    )


def test_changes_release_the_names_their_record_let_go_of():
    registry = CollectionRegistry([notes])
    events = [
        _event("insert", {"attachments": ["a.pdf"]}, None),
        _event("update", {"attachments": ["a.pdf"]}, {"attachments": ["a.pdf"]}),
        _event("update", {"attachments": ["b.png"]}, {"attachments": ["a.pdf", "b.png"]}),
        _event("delete", None, {"attachments": ["b.png", "c.png"]}),
        _event("delete", None, {"attachments": []}),
    ]
    assert released_files(registry, events) == [
        ("notes", "r1", ["a.pdf"]),
        ("notes", "r1", ["b.png", "c.png"]),
    ]


@pytest.mark.parametrize(
    ("given", "stem", "extension"),
    [
        ("../../Quarterly Réport.PDF", "Quarterly_Report", ".pdf"),
        ("..\\..\\windows\\evil.exe", "evil", ".exe"),
        ("/etc/passwd", "passwd", ""),
        (".bashrc", "file", ".bashrc"),
        ("a<script>.html", "a_script", ".html"),
        ("名前.png", "file", ".png"),
        ("x." + "y" * 40, "x", "." + "y" * 10),
    ],
)
def test_stored_names_are_safe_and_unique(given, stem, extension):
    name = stored_name(given, 100)
    assert name.startswith(stem + "_") and name.endswith(extension)
    assert looks_stored(name), name
    assert stored_name(given, 100) != name  # the random suffix


def test_a_stored_name_keeps_to_the_longest_allowed():
    name = stored_name("a" * 300 + ".pdf", 40)
    assert len(name) == 40 and name.endswith(".pdf") and looks_stored(name)


def test_sniffing_names_types_from_bytes():
    assert sniff(PDF) == "application/pdf"
    assert sniff(png()) == "image/png"
    assert sniff(b"just words\n") == "text/plain"
    assert sniff("héllo".encode()[:2]) == "text/plain"  # cut inside a character
    assert sniff(b"\x00\x01\x02\x03binary") == "application/octet-stream"
    assert sniff(b"") == "application/octet-stream"


def test_a_thumbnail_is_refused_past_the_pixel_limit_before_decoding():
    from backend.files.thumbs import NotThumbnailable, make_thumb

    picture = png(200, 100)
    assert make_thumb(picture, "image/png", "100x100", max_pixels=20_000)
    with pytest.raises(NotThumbnailable, match="FILES_THUMB_MAX_PIXELS"):
        make_thumb(picture, "image/png", "100x100", max_pixels=19_999)
    # A bomb is refused from its header (by Pillow's own guard first, at this size).
    with pytest.raises(NotThumbnailable, match="pixels"):
        make_thumb(png_claiming(30_000, 30_000), "image/png", "100x100", max_pixels=40_000_000)
    with pytest.raises(NotThumbnailable, match="FILES_THUMB_MAX_PIXELS"):
        make_thumb(png_claiming(6_000, 6_000), "image/png", "100x100", max_pixels=30_000_000)


def test_thumbnail_boxes_crop_or_fit():
    import io

    from PIL import Image

    from backend.files.thumbs import make_thumb

    def size(box: str) -> tuple[int, int]:
        return Image.open(io.BytesIO(make_thumb(png(200, 100), "image/png", box, 10**6))).size

    assert size("100x100") == (100, 100)
    assert size("50x0") == (50, 25)
    assert size("0x20") == (40, 20)
    assert size("400x400") == (200, 100)


def test_a_pdfs_thumbnail_is_its_first_page_drawn_to_the_box():
    import io

    from PIL import Image

    from backend.files.thumbs import NotThumbnailable, make_thumb

    def drawn(box: str, max_pixels: int = 10**6) -> Image.Image:
        made = make_thumb(pdf_page(200, 100, (0, 0, 1)), "application/pdf", box, max_pixels)
        return Image.open(io.BytesIO(made))

    square = drawn("100x100")
    assert (square.format, square.size) == ("PNG", (100, 100))
    red, green, blue = square.convert("RGB").getpixel((50, 50))
    assert blue > 200 and red < 50 and green < 50  # the page's blue, not a blank
    assert drawn("640x0").size == (640, 320)  # drawn, not enlarged: a page has no pixel size
    # Never past the pixel limit: 10,000 pixels of a 2:1 page.
    assert drawn("640x0", max_pixels=10_000).size == (140, 70)
    for broken in (PDF, b"%PDF-1.4 and then nothing"):  # a catalog with no pages; no body
        with pytest.raises(NotThumbnailable, match="pdfium can open"):
            make_thumb(broken, "application/pdf", "100x100", 10**6)


async def test_thumbnails_are_made_at_most_the_cap_at_once(monkeypatch):
    import threading
    import time

    from backend.files import thumbs

    active, most, lock = [0], [0], threading.Lock()

    def working(source, content_type, size, max_pixels):  # a thumbnail that takes 50 ms
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return b"thumb"

    monkeypatch.setattr(thumbs, "make_thumb", working)
    for cap in (1, 2):
        most[0] = 0
        maker = thumbs.ThumbMaker(concurrency=cap, max_pixels=10**6)
        made = await asyncio.gather(*(maker.make(b"", "image/png", "1x1") for _ in range(4)))
        assert made == [b"thumb"] * 4
        assert most[0] == cap
