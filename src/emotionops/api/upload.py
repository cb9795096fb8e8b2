"""Uploaded images: read in memory under a byte cap, sniff the type, cap pixels, decode.

PRIVACY: an upload lives in one `bytes` object and one decoded array for the duration of a
request. Starlette's own form parser spools files over 1 MB to a temporary file on disk, so
the multipart body is parsed here, in memory (python-multipart's streaming parser).
Type and size come from the bytes, never from the file name or the declared content type.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterable
from dataclasses import dataclass

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError

#: Multipart framing (boundaries, part headers, a small text field) allowed beyond the file.
MULTIPART_OVERHEAD = 64 * 1024


class UploadRejected(EmotionOpsError):
    """An upload the API refuses; carries the HTTP status and a stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None


@dataclass
class DecodedImage:
    image: np.ndarray  # BGR uint8, EXIF orientation applied (as browsers display it)
    kind: str
    width: int
    height: int


def too_large(size: int, limit: int) -> UploadRejected:
    return UploadRejected(413, "too_large", f"upload is {size} bytes; the limit is {limit} bytes")


async def read_capped(chunks: AsyncIterable[bytes], declared: str | None, cap: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed `cap` bytes."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise UploadRejected(400, "bad_request", "Content-Length is not a number") from None
        if size > cap:
            raise too_large(size, cap)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise too_large(len(body), cap)
    return bytes(body)


def parse_multipart(body: bytes, content_type: str | None, field: str = "file") -> Upload:
    """The file part named `field` (or the only file part) of a multipart/form-data body."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRejected(
            415,
            "not_multipart",
            f"send the image as multipart/form-data with a file field {field!r} "
            f"(got Content-Type {content_type or 'none'!r})",
        )
    parts: list[dict] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"], header["value"] = bytearray(), bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own error types and ValueError
        raise UploadRejected(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
    files = []
    for part in parts:
        _, disp = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" in disp or disp.get(b"name") == field.encode():
            name = disp.get(b"name", b"").decode("utf-8", "replace")
            filename = disp[b"filename"].decode("utf-8", "replace") if b"filename" in disp else None
            files.append((name, Upload(bytes(part["data"]), filename)))
    named = [upload for name, upload in files if name == field]
    chosen = named or [upload for _, upload in files]
    if len(chosen) != 1:
        raise UploadRejected(
            422,
            "no_file" if not chosen else "several_files",
            f"expected one image in the form field {field!r}, got {len(chosen)}",
        )
    return chosen[0]


def sniff_type(data: bytes) -> str | None:
    """Image type from the leading bytes (magic numbers), or None when not an image."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return None


_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}


def header_size(data: bytes, kind: str) -> tuple[int, int]:
    """(width, height) from the image header, without decoding any pixel."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as probe:
                return probe.size
    except Image.DecompressionBombError as exc:
        raise UploadRejected(422, "too_many_pixels", f"image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:  # its message only names a BytesIO object
        raise UploadRejected(
            422, "corrupt", f"the {kind} header cannot be read (corrupt or truncated)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadRejected(
            422, "corrupt", f"the {kind} header cannot be read (corrupt or truncated): {exc}"
        ) from exc


def decode_image(
    data: bytes, max_bytes: int, max_pixels: int, allowed_types: list[str]
) -> DecodedImage:
    """Checked and decoded upload: size (413), type (415), pixels and corruption (422)."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    if not data:
        raise UploadRejected(422, "empty", "the uploaded file is empty")
    kind = sniff_type(data)
    if kind is None:
        raise UploadRejected(
            415,
            "not_an_image",
            f"the upload is not an image (unrecognised content); send one of {allowed_types}",
        )
    if kind not in allowed_types:
        raise UploadRejected(
            415, "unsupported_type", f"{kind} images are not accepted; send one of {allowed_types}"
        )
    width, height = header_size(data, kind)
    if width * height > max_pixels:
        raise UploadRejected(
            422,
            "too_many_pixels",
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UploadRejected(422, "corrupt", f"the {kind} image cannot be decoded (corrupt?)")
    h, w = image.shape[:2]
    if w * h > max_pixels:  # EXIF rotation never changes the count; a lying header could
        raise UploadRejected(
            422, "too_many_pixels", f"image decodes to {w}x{h} pixels; the limit is {max_pixels}"
        )
    return DecodedImage(image=image, kind=kind, width=w, height=h)
