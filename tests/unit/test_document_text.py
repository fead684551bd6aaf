"""Text out of documents for vector search (backend/vectors/extract.py): PDFs page by page,
HTML without its scripts, Markdown and plain text, within the settings' limits; and the
reasons a document has no text."""

from __future__ import annotations

import contextlib
import time

import pytest

from backend.config import settings_from_env
from backend.vectors.documents import limits_of
from backend.vectors.extract import Limits, NotExtractable, document_kind, extract
from tests.files_support import PDF, pdf

WIDE = Limits(max_pages=100, max_chars=100_000, max_bytes=10**7)


def _pieces(data: bytes, size: int = 7) -> list[bytes]:
    """The bytes in small pieces, as storage streams them (characters cut across pieces)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_pdf_gives_its_text_page_by_page_numbered_from_one():
    data = pdf(["Alpha page.", "", "The heron lands at dawn."])
    got = extract("pdf", _pieces(data, 64), len(data), WIDE)
    assert got.parts == [(1, "Alpha page."), (2, ""), (3, "The heron lands at dawn.")]
    assert got.pages == 3 and got.note is None


def test_a_pdf_without_a_text_layer_is_refused_with_the_reason():
    data = pdf(["", ""])
    with pytest.raises(NotExtractable, match="no text layer"):
        extract("pdf", [data], len(data), WIDE)


@pytest.mark.parametrize(
    "data",
    [PDF, b"%PDF-1.4\nnot really a pdf at all", pdf(["fine"])[:-200], b"%PDF-" + b"\xff" * 5000],
    ids=["no-pages", "garbage", "truncated", "binary"],
)
def test_a_corrupt_pdf_is_refused_with_a_reason_never_a_crash(data):
    with pytest.raises(NotExtractable) as refused:
        extract("pdf", [data], len(data), WIDE)
    assert refused.value.reason


def test_max_pages_reads_only_the_first_pages_and_says_so():
    data = pdf([f"page {n} words" for n in range(1, 6)])
    got = extract("pdf", [data], len(data), Limits(max_pages=2, max_chars=10_000, max_bytes=10**7))
    assert [page for page, _ in got.parts] == [1, 2]
    assert got.note is not None and "EMBEDDING_FILE_MAX_PAGES" in got.note and "of 5" in got.note


def test_max_chars_cuts_the_text_and_says_so():
    data = pdf(["a" * 50, "b" * 50, "c" * 50])
    got = extract("pdf", [data], len(data), Limits(max_pages=10, max_chars=70, max_bytes=10**7))
    assert "".join(text for _, text in got.parts) == "a" * 50 + "b" * 20
    assert got.note is not None and "EMBEDDING_FILE_MAX_CHARS" in got.note
    text = ("é" * 40).encode()
    got = extract("text", _pieces(text, 3), len(text), Limits(10, 25, 10**7))
    assert got.parts == [(None, "é" * 25)] and got.note is not None


def test_reading_stops_at_max_chars_without_reading_the_rest():
    read = []

    def endless():
        while True:
            read.append(1)
            yield b"word " * 100

    got = extract("text", endless(), 10, Limits(10, 1_000, 10**7))
    assert len(got.parts[0][1]) == 1_000 and len(read) <= 3


def test_a_file_over_max_bytes_is_refused_unread():
    def never():
        raise AssertionError("read")
        yield b""

    with pytest.raises(NotExtractable, match="EMBEDDING_FILE_MAX_BYTES"):
        extract("pdf", never(), 2_000, Limits(10, 10_000, 1_000))
    data = pdf(["fine"])  # a stream longer than its ledger says is cut off too
    with pytest.raises(NotExtractable, match="EMBEDDING_FILE_MAX_BYTES"):
        extract("pdf", [data], 10, Limits(10, 10_000, 100))


def test_reading_that_takes_too_long_is_refused_with_the_reason():
    def slow():
        for _ in range(50):
            time.sleep(0.05)
            yield b"%PDF-1.4 slow "

    started = time.monotonic()
    with pytest.raises(NotExtractable, match="EMBEDDING_FILE_MAX_SECONDS"):
        extract("pdf", slow(), 10, Limits(10, 10_000, 10**7, max_seconds=0.3))
    assert time.monotonic() - started < 2
    # The timer is gone afterwards: a later read is not cut short.
    time.sleep(0.4)
    data = pdf(["after"])
    assert extract("pdf", [data], len(data), Limits(10, 10_000, 10**7, 0.3)).parts == [(1, "after")]


def test_the_time_bound_is_not_swallowed_by_a_parsers_own_handlers():
    def swallowing():
        with contextlib.suppress(Exception):  # what a parser's broad handler would do
            time.sleep(1)
        yield b"text after all"

    with pytest.raises(NotExtractable, match="EMBEDDING_FILE_MAX_SECONDS"):
        extract("text", swallowing(), 10, Limits(10, 10_000, 10**7, max_seconds=0.2))


def test_html_gives_what_a_reader_sees():
    page = (
        b"<!DOCTYPE html><html><head><title>T</title><style>p{}</style></head><body>"
        b"<script>alert('secret script')</script><h1>Heading</h1><p>First &amp; best</p>"
        b"<p>Second<br>line</p></body></html>"
    )
    got = extract("html", _pieces(page, 5), len(page), WIDE)
    text = got.parts[0][1]
    assert "secret script" not in text and "p{}" not in text
    assert "Heading" in text and "First & best" in text and "Second" in text
    assert got.parts[0][0] is None


def test_plain_text_and_markdown_are_read_as_utf8_without_nul():
    data = "# Title\n\nSome *markdown* — with ünïcode\x00.".encode()
    got = extract("markdown", _pieces(data, 1), len(data), WIDE)
    assert got.parts == [(None, "# Title\n\nSome *markdown* — with ünïcode.")]
    with pytest.raises(NotExtractable, match="no text"):
        extract("text", [b"  \n\n "], 5, WIDE)


def test_which_files_are_documents():
    assert document_kind("application/pdf", "a.pdf") == "pdf"
    assert document_kind("text/html", "a.html") == "html"
    assert document_kind("text/plain", "notes_k3x9q2m1za.md") == "markdown"
    assert document_kind("text/plain", "a.txt") == "text"
    assert document_kind("image/png", "a.png") is None
    assert document_kind("application/octet-stream", "a.pdf") is None


def test_the_limits_are_settings_with_sane_defaults():
    limits = limits_of(settings_from_env({}))
    assert limits == Limits(
        max_pages=500, max_chars=1_000_000, max_bytes=100 * 1024 * 1024, max_seconds=120.0
    )
    limits = limits_of(
        settings_from_env(
            {
                "EMBEDDING_FILE_MAX_PAGES": "3",
                "EMBEDDING_FILE_MAX_CHARS": "10",
                "EMBEDDING_FILE_MAX_BYTES": "99",
                "EMBEDDING_FILE_MAX_SECONDS": "1.5",
            }
        )
    )
    assert limits == Limits(max_pages=3, max_chars=10, max_bytes=99, max_seconds=1.5)
