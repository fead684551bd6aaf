"""Thumbnails of image files, made on demand from a field's allow-listed sizes and kept in
storage beside the file (``<collection>/<record>/thumbs/<WxH>/<name>``).

``WxH`` crops to exactly that box from the centre; ``Wx0`` and ``0xH`` fit the width or the
height, keeping proportions. An image is never enlarged. Before a pixel is decoded the header's
size is checked against FILES_THUMB_MAX_PIXELS (a decompression bomb — a small file that
decodes to gigabytes — is refused there); at most FILES_THUMB_CONCURRENCY are made at once per
API process, each in a thread, so a burst of first views cannot take the CPU or the memory.
"""

from __future__ import annotations

import asyncio
import io
import warnings

from PIL import Image, ImageOps

from backend.collections.files import thumb_box

# What a thumbnail can be made of, and the format it is written in.
THUMB_FORMATS = {
    "image/png": ("PNG", "image/png"),
    "image/jpeg": ("JPEG", "image/jpeg"),
    "image/gif": ("PNG", "image/png"),
    "image/webp": ("WEBP", "image/webp"),
    "image/bmp": ("PNG", "image/png"),
}


class NotThumbnailable(Exception):
    """The file cannot be made into a thumbnail (too many pixels, not an image it can read)."""


def thumb_type(content_type: str) -> str | None:
    """The type of a thumbnail of a file of ``content_type``; None when none is made."""
    found = THUMB_FORMATS.get(content_type)
    return found[1] if found else None


def make_thumb(source: bytes, content_type: str, size: str, max_pixels: int) -> bytes:
    """The thumbnail of ``size`` of an image (blocking: call it in a thread)."""
    width, height = thumb_box(size)
    image_format = THUMB_FORMATS[content_type][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            opened = Image.open(io.BytesIO(source))
            pixels = opened.size[0] * opened.size[1]
            if pixels > max_pixels:
                raise NotThumbnailable(f"{pixels} pixels (FILES_THUMB_MAX_PIXELS is {max_pixels})")
            opened.draft("RGB", (max(width, 1) * 2, max(height, 1) * 2))  # JPEG: decode smaller
            image: Image.Image = ImageOps.exif_transpose(opened)
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


class ThumbMaker:
    """Thumbnails made in threads, at most ``concurrency`` at once."""

    def __init__(self, concurrency: int, max_pixels: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self.max_pixels = max_pixels

    async def make(self, source: bytes, content_type: str, size: str) -> bytes:
        async with self._slots:
            return await asyncio.to_thread(make_thumb, source, content_type, size, self.max_pixels)
