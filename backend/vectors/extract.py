"""Text out of stored documents for vector search: PDF (pypdf, page by page), HTML (the
standard library's parser), Markdown and plain text, read from storage as a stream and bounded.

A file yields its text by page (PDFs: the page number, from 1; other files: one part with no
page). What is read is bounded by settings: a PDF's first EMBEDDING_FILE_MAX_PAGES pages, at
most EMBEDDING_FILE_MAX_CHARS characters of any file (what is left out is said in ``note``);
a file over EMBEDDING_FILE_MAX_BYTES is not read at all, and reading one may take at most
EMBEDDING_FILE_MAX_SECONDS (a hostile PDF can keep a parser busy; the bound is a SIGALRM timer,
so it holds where a worker runs tasks, on a process's main thread, and not on other threads).
A file that yields no text (a scanned PDF without a text layer), cannot be parsed (a corrupt
PDF) or is encrypted raises
``NotExtractable`` with the reason, which the file's embedding status shows.
"""

from __future__ import annotations

import codecs
import logging
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from types import FrameType
from typing import Literal

log = logging.getLogger(__name__)

Kind = Literal["pdf", "html", "markdown", "text"]

# The sniffed types (backend/files/sniff.py) whose text is embedded; anything else (images,
# archives) is not a document and is left out of vector search and its status.
DOCUMENT_TYPES: dict[str, Kind] = {
    "application/pdf": "pdf",
    "text/html": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
}
_MARKDOWN_SUFFIXES = (".md", ".markdown")
# A PDF is spooled to a temporary file (pypdf reads it by seeking); this much stays in memory.
_SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024


class NotExtractable(Exception):
    """The file has no text to embed; ``reason`` says why, for the embedding status."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_chars: int
    max_bytes: int
    max_seconds: float = 0.0  # 0: no time bound


class _TimedOut(BaseException):
    """Raised by the timer into whatever runs; a BaseException so that no parser's own
    ``except Exception`` swallows it."""


@contextmanager
def _time_bound(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with _TimedOut (main thread only; else a no-op)."""
    usable = (
        seconds > 0
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Extracted:
    """A document's text: (page or None, text) parts in order, and what was left out."""

    parts: list[tuple[int | None, str]]
    pages: int | None = None  # a PDF's page count
    note: str | None = None


def document_kind(content_type: str, name: str) -> Kind | None:
    """How to read a file of this (sniffed) type and name; None: it is not a document."""
    kind = DOCUMENT_TYPES.get(content_type.lower())
    if kind == "text" and name.lower().endswith(_MARKDOWN_SUFFIXES):
        return "markdown"
    return kind


def extract(kind: Kind, chunks: Iterable[bytes], size: int, limits: Limits) -> Extracted:
    """The text of a file of ``size`` bytes read from ``chunks``; raises NotExtractable."""
    if size > limits.max_bytes:
        raise NotExtractable(
            f"the file is larger than {limits.max_bytes} bytes (EMBEDDING_FILE_MAX_BYTES)"
        )
    try:
        with _time_bound(limits.max_seconds):
            return _extract(kind, chunks, limits)
    except _TimedOut:
        raise NotExtractable(
            f"reading the file took longer than {limits.max_seconds:g} s"
            " (EMBEDDING_FILE_MAX_SECONDS)"
        ) from None


def _extract(kind: Kind, chunks: Iterable[bytes], limits: Limits) -> Extracted:
    if kind == "pdf":
        extracted = _pdf(chunks, limits)
    else:
        text, cut = _decoded(chunks, limits.max_chars, html=kind == "html")
        note = _chars_note(limits) if cut else None
        extracted = Extracted([(None, text)], note=note)
    if not any(text.strip() for _, text in extracted.parts):
        if kind == "pdf":
            raise NotExtractable(
                "no text layer: the PDF has no extractable text (a scanned document?"
                " run OCR on it first)"
            )
        raise NotExtractable("the file has no text")
    return extracted


def _chars_note(limits: Limits) -> str:
    return f"text after {limits.max_chars} characters left out (EMBEDDING_FILE_MAX_CHARS)"


def _clean(text: str) -> str:
    return text.replace("\x00", "")  # Postgres text cannot hold NUL


def _decoded(chunks: Iterable[bytes], max_chars: int, *, html: bool) -> tuple[str, bool]:
    """UTF-8 text (undecodable bytes replaced) of at most ``max_chars`` characters, read only
    as far as needed; True when some was left out."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parser = _HtmlText() if html else None
    parts: list[str] = []
    taken = 0
    for chunk in chunks:
        piece = decoder.decode(chunk)
        if parser is not None:
            parser.feed(piece)
            piece = parser.take()
        piece = _clean(piece)
        if taken + len(piece) > max_chars:
            parts.append(piece[: max_chars - taken])
            return "".join(parts), True
        parts.append(piece)
        taken += len(piece)
    tail = decoder.decode(b"", final=True)
    if parser is not None:
        parser.feed(tail)
        parser.close()
        tail = parser.take()
    tail = _clean(tail)
    cut = taken + len(tail) > max_chars
    parts.append(tail[: max_chars - taken])
    return "".join(parts), cut


class _HtmlText(HTMLParser):
    """The text a reader sees: no script, style or other non-content elements; block
    elements end a paragraph."""

    SKIP = frozenset({"script", "style", "template", "noscript", "head", "svg", "iframe"})
    BLOCKS = frozenset(
        {
            "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article",
            "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
            "hr", "dd", "dt", "title", "main", "aside", "nav", "figure", "figcaption",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._skipping = 0
        self._out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self._out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCKS:
            self._out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._out.append(data)

    def take(self) -> str:
        text = "".join(self._out)
        self._out.clear()
        return text


def _pdf(chunks: Iterable[bytes], limits: Limits) -> Extracted:
    # pypdf is imported here: only workers read PDFs, and the API process need not load it.
    from pypdf import PdfReader

    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY_BYTES) as spool:
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > limits.max_bytes:
                raise NotExtractable(
                    f"the file is larger than {limits.max_bytes} bytes (EMBEDDING_FILE_MAX_BYTES)"
                )
            spool.write(chunk)
        spool.seek(0)
        # A corrupt or hostile PDF may raise anything from deep in the parser (PdfReadError,
        # but also KeyError, ValueError, RecursionError…): each is a reason, never a crash.
        try:
            reader = PdfReader(spool)
            if reader.is_encrypted and not reader.decrypt(""):
                raise NotExtractable("the PDF is encrypted with a password")
            count = len(reader.pages)
            parts: list[tuple[int | None, str]] = []
            taken = 0
            note = None
            for number in range(min(count, limits.max_pages)):
                text = _clean(reader.pages[number].extract_text() or "")
                if taken + len(text) > limits.max_chars:
                    parts.append((number + 1, text[: limits.max_chars - taken]))
                    note = _chars_note(limits)
                    break
                parts.append((number + 1, text))
                taken += len(text)
        except NotExtractable:
            raise
        except Exception as exc:  # see above
            log.info("a PDF could not be read: %r", exc)
            raise NotExtractable(f"the PDF could not be read: {_short(exc)}") from exc
    if note is None and count > limits.max_pages:
        note = f"pages after {limits.max_pages} of {count} left out (EMBEDDING_FILE_MAX_PAGES)"
    return Extracted(parts, pages=count, note=note)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
