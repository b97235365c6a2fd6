"""Images shipped in model repositories (PNG, JPEG, GIF, WebP, BMP, ICO): magic plus minimal structure.

Model cards carry diagrams and logos. No model loader runs an image, so an
image is inert; what matters is that the bytes really are one image and carry
nothing after its end (a payload appended to a PNG rides along unseen). The
structure walked is the least that finds the image's end: PNG chunks up to
``IEND``, JPEG segments up to the scan (the file must then end with ``EOI``),
the GIF trailer, the RIFF length of WebP, the BMP file size and the ICO
directory. Pixel data is never decoded.

Not handled here: decoder bugs in image libraries (weightguard never decodes)
and SVG, which is text and detected as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from weightguard.errors import FormatError
from weightguard.findings import Finding
from weightguard.formats import asset_codes as codes
from weightguard.formats.interface import FileFormat

if TYPE_CHECKING:
    from weightguard.analysis.interface import Location, ScanContext
    from weightguard.sources.interface import ByteSource

PNG_SIG = b"\x89PNG\r\n\x1a\n"
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})


class ImageError(FormatError):
    """The bytes start like an image but its structure is broken."""


def image_kind(head: bytes) -> str | None:
    """Name the image format whose magic ``head`` starts with, or None."""
    if head[:8] == PNG_SIG:
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and 1 <= int.from_bytes(head[4:6], "little") <= 256:
        return "ico"
    return None


def image_end(source: ByteSource, kind: str) -> int:
    """Return the offset where the image of ``kind`` ends.

    Raises:
        ImageError: The structure is broken or points past the end of the file.
    """
    ends = {"png": _png_end, "jpeg": _jpeg_end, "gif": _gif_end, "webp": _webp_end, "bmp": _bmp_end, "ico": _ico_end}
    end = ends[kind](source)
    if end > source.size:
        raise ImageError(f"{kind} structure declares {end} bytes, the file has {source.size}")
    return end


def _png_end(source: ByteSource) -> int:
    pos = 8
    first = True
    while pos + 12 <= source.size:
        header = source.read_at(pos, 8)
        length, ctype = int.from_bytes(header[:4], "big"), header[4:8]
        if length > 2**31 - 1 or not ctype.isalpha() or (first and ctype != b"IHDR"):
            raise ImageError(f"PNG chunk at offset {pos} is not a valid chunk ({ctype!r}, {length} bytes)")
        first = False
        pos += 12 + length
        if ctype == b"IEND":
            return pos
    raise ImageError("PNG ends before its IEND chunk")


def _jpeg_end(source: ByteSource) -> int:
    pos = 2
    while pos + 4 <= source.size:
        marker = source.read_at(pos, 4)
        if marker[0] != 0xFF:
            raise ImageError(f"JPEG segment at offset {pos} does not start with 0xFF")
        if marker[1] == 0xFF:
            pos += 1  # fill byte
            continue
        if marker[1] == 0xD9:
            return pos + 2
        if marker[1] in _JPEG_NO_LENGTH:
            pos += 2
            continue
        length = int.from_bytes(marker[2:4], "big")
        if length < 2:
            raise ImageError(f"JPEG segment at offset {pos} has length {length}")
        pos += 2 + length
        if marker[1] == 0xDA:  # start of scan: entropy-coded data runs to EOI
            if source.read_at(source.size - 2, 2) != b"\xff\xd9":
                return _last_eoi(source, pos)
            return source.size
    raise ImageError("JPEG ends before its scan")


def _last_eoi(source: ByteSource, after: int) -> int:
    tail_at = max(after, source.size - 65536)
    index = source.read_at(tail_at, source.size - tail_at).rfind(b"\xff\xd9")
    if index < 0:
        raise ImageError("JPEG has no end-of-image marker in its last 64 KiB")
    return tail_at + index + 2


def _gif_end(source: ByteSource) -> int:
    if source.size < 14:
        raise ImageError("GIF shorter than its header")
    if source.read_at(source.size - 1, 1) == b";":
        return source.size
    tail_at = max(13, source.size - 65536)
    index = source.read_at(tail_at, source.size - tail_at).rfind(b"\x00;")
    if index < 0:
        raise ImageError("GIF has no trailer")
    return tail_at + index + 2


def _webp_end(source: ByteSource) -> int:
    head = source.read_at(0, 16)
    size = int.from_bytes(head[4:8], "little")
    if head[12:15] != b"VP8" or size < 4:
        raise ImageError("WebP's first chunk is not VP8, VP8L or VP8X")
    return 8 + size + (size & 1)


def _bmp_end(source: ByteSource) -> int:
    head = source.read_at(0, 14)
    size, pixels = int.from_bytes(head[2:6], "little"), int.from_bytes(head[10:14], "little")
    if size < 26 or not 14 < pixels <= size:
        raise ImageError(f"BMP header declares {size} bytes with pixels at {pixels}")
    return size


def _ico_end(source: ByteSource) -> int:
    count = int.from_bytes(source.read_at(4, 2), "little")
    directory = source.read_at(6, 16 * count)
    if len(directory) < 16 * count:
        raise ImageError("ICO directory runs past the end of the file")
    end = 6 + 16 * count
    for i in range(count):
        entry = directory[16 * i : 16 * i + 16]
        size, offset = int.from_bytes(entry[8:12], "little"), int.from_bytes(entry[12:16], "little")
        if size == 0 or offset < 6 + 16 * count:
            raise ImageError(f"ICO entry {i} has size {size} at offset {offset}")
        end = max(end, offset + size)
    return end


class ImageAnalyzer:
    """Analyzer for images: structure holds and nothing follows the image's end."""

    name = "image"
    formats = frozenset({FileFormat.IMAGE})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield a finding when the image is broken or bytes follow its end."""
        ctx.check_time()
        kind = image_kind(source.read_at(0, 32))
        if kind is None:
            yield codes.IMG_MALFORMED.at(where.path, "no image magic", member=where.member)
            return
        try:
            end = image_end(source, kind)
        except ImageError as exc:
            yield codes.IMG_MALFORMED.at(where.path, exc.message, member=where.member, kind=kind)
            return
        if end < source.size:
            extra = source.size - end
            message = f"{extra} bytes follow the {kind} image's end at offset {end}"
            yield codes.IMG_TRAILING_DATA.at(where.path, message, member=where.member, kind=kind, offset=end)
