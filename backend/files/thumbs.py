"""Thumbnails of image files and of PDFs (their first page), made on demand from a field's
allow-listed sizes and kept in storage beside the file
(``<collection>/<record>/thumbs/<WxH>/<name>``).

``WxH`` crops to exactly that box from the centre; ``Wx0`` and ``0xH`` fit the width or the
height, keeping proportions. An image is never enlarged. Before a pixel is decoded the header's
size is checked against FILES_THUMB_MAX_PIXELS (a decompression bomb — a small file that
decodes to gigabytes — is refused there); at most FILES_THUMB_CONCURRENCY are made at once per
API process, each in a thread, so a burst of first views cannot take the CPU or the memory.

A PDF's first page is drawn by pdfium (pypdfium2: Chromium's PDF engine, fuzzed continuously)
at the scale the box needs, never at more pixels than FILES_THUMB_MAX_PIXELS; a PDF it cannot
open (encrypted, broken, no pages) gets no thumbnail.
"""

from __future__ import annotations

import asyncio
import io
import math
import warnings

import pypdfium2 as pdfium
from PIL import Image, ImageOps

from backend.collections.files import thumb_box

# What a thumbnail can be made of, and the format it is written in.
THUMB_FORMATS = {
    "image/png": ("PNG", "image/png"),
    "image/jpeg": ("JPEG", "image/jpeg"),
    "image/gif": ("PNG", "image/png"),
    "image/webp": ("WEBP", "image/webp"),
    "image/bmp": ("PNG", "image/png"),
    "application/pdf": ("PNG", "image/png"),
}


class NotThumbnailable(Exception):
    """The file cannot be made into a thumbnail (too many pixels, not an image it can read)."""


def thumb_type(content_type: str) -> str | None:
    """The type of a thumbnail of a file of ``content_type``; None when none is made."""
    found = THUMB_FORMATS.get(content_type)
    return found[1] if found else None


def make_thumb(source: bytes, content_type: str, size: str, max_pixels: int) -> bytes:
    """The thumbnail of ``size`` of an image or a PDF (blocking: call it in a thread)."""
    width, height = thumb_box(size)
    image_format = THUMB_FORMATS[content_type][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if content_type == "application/pdf":
                image = _first_page(source, width, height, max_pixels)
            else:
                image = _decoded(source, width, height, max_pixels)
            if image_format == "JPEG":
                image = image.convert("RGB")
            elif image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA")
            if width and height:
                box = (min(width, image.width), min(height, image.height))
                image = ImageOps.fit(image, box, Image.Resampling.LANCZOS)
            else:
                image.thumbnail(
                    (width or image.width, height or image.height), Image.Resampling.LANCZOS
                )
            out = io.BytesIO()
            image.save(out, image_format)
            return out.getvalue()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise NotThumbnailable(str(exc)) from exc
        except Image.DecompressionBombWarning as exc:
            raise NotThumbnailable(str(exc)) from exc


def _decoded(source: bytes, width: int, height: int, max_pixels: int) -> Image.Image:
    """An image file decoded, once its header says it is not too many pixels."""
    opened = Image.open(io.BytesIO(source))
    pixels = opened.size[0] * opened.size[1]
    if pixels > max_pixels:
        raise NotThumbnailable(f"{pixels} pixels (FILES_THUMB_MAX_PIXELS is {max_pixels})")
    opened.draft("RGB", (max(width, 1) * 2, max(height, 1) * 2))  # JPEG: decode smaller
    return ImageOps.exif_transpose(opened)


def _first_page(source: bytes, width: int, height: int, max_pixels: int) -> Image.Image:
    """A PDF's first page drawn just large enough to fill the box (``WxH``: cover it, to be
    cropped; ``Wx0``/``0xH``: that side), and never past ``max_pixels``."""
    try:
        document = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        raise NotThumbnailable(f"not a PDF pdfium can open: {exc}") from exc
    try:
        if len(document) == 0:
            raise NotThumbnailable("a PDF with no pages")
        page = document[0]
        try:
            page_width, page_height = page.get_size()  # in points, 72 to the inch
            if page_width < 1 or page_height < 1:
                raise NotThumbnailable(f"a page of {page_width}x{page_height} points")
            scale = max(width / page_width, height / page_height)
            # pdfium rounds a side up: a pixel short of the limit's scale keeps under it.
            largest = (max_pixels / (page_width * page_height)) ** 0.5
            largest = max(math.floor(page_width * largest) - 1, 1) / page_width
            bitmap = page.render(scale=min(scale, largest), fill_color=(255, 255, 255, 255))
            try:
                drawn: Image.Image = bitmap.to_pil()
                return drawn.convert("RGB")
            finally:
                bitmap.close()
        finally:
            page.close()
    except pdfium.PdfiumError as exc:
        raise NotThumbnailable(f"the first page could not be drawn: {exc}") from exc
    finally:
        document.close()


class ThumbMaker:
    """Thumbnails made in threads, at most ``concurrency`` at once."""

    def __init__(self, concurrency: int, max_pixels: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self.max_pixels = max_pixels

    async def make(self, source: bytes, content_type: str, size: str) -> bytes:
        async with self._slots:
            return await asyncio.to_thread(make_thumb, source, content_type, size, self.max_pixels)
