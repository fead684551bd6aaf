"""Small real files for the files tests: a PDF and PNGs made here, byte by byte."""

from __future__ import annotations

import struct
import zlib

PDF = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
)


def pdf_page(
    width: int = 200, height: int = 100, rgb: tuple[float, float, float] = (0, 0, 1)
) -> bytes:
    """A one-page PDF of ``width`` by ``height`` points, all of it filled with ``rgb``: a page
    a thumbnail can be drawn of."""
    content = b"%g %g %g rg 0 0 %d %d re f" % (*rgb, width, height)
    return _written(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 4 0 R >>"
            % (width, height),
            _stream(content),
        ]
    )


def _stream(content: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)


def _written(objects: list[bytes]) -> bytes:
    """A PDF file of ``objects`` (numbered from 1, the first the catalog), with the
    cross-reference table and trailer a reader finds them by."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n"


def png(width: int = 2, height: int = 2, padding: int = 0) -> bytes:
    """A valid RGB PNG of ``width`` by ``height``; ``padding`` bytes of a text chunk make it
    as large as a test needs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    extra = chunk(b"tEXt", b"pad\x00" + b"x" * padding) if padding else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` by ``height`` pixels: a decompression bomb as
    a thumbnailer sees it before decoding."""
    real = png()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    ihdr = b"IHDR" + header
    start = 8  # after the signature: length, then the chunk
    return (
        real[:start]
        + struct.pack(">I", 13)
        + ihdr
        + struct.pack(">I", zlib.crc32(ihdr))
        + real[start + 25 :]
    )


def pdf(pages: list[str]) -> bytes:
    """A valid PDF of one page per text (an empty text: a page with no text layer, as a scan
    without OCR reads), built by hand: catalog, pages, Helvetica, a content stream a page."""

    def escaped(text: str) -> bytes:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")

    objects: list[bytes] = []
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        page, content = 4 + 2 * i, 5 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources"
            f" << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>".encode()
        )
        stream = b"BT /F1 12 Tf 72 720 Td (" + escaped(text) + b") Tj ET" if text else b""
        objects.append(_stream(stream))
        assert page == len(objects) - 1
    return _written(objects)
