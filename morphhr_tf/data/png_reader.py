"""Reads one radiograph from a PNG file: grey pixels in [0, 1] plus safe metadata.

ChestX-ray14 ships 8-bit grey PNGs (and a few RGBA ones). The reader is as
defensive as :mod:`morphhr_tf.data.dicom_reader`: it walks the file's chunks
itself before Pillow decodes anything, and bounds what a hostile file can make
it do:

- the 8-byte PNG signature, then IHDR first (13 bytes, valid CRC): width and
  height in 1 .. 2**31 - 1 with width x height within ``max_pixels`` (a few
  bytes can declare gigapixels: a decompression bomb), a bit depth and colour
  type pair the PNG specification allows, compression and filter method 0,
  interlace method 0 (none) or 1 (Adam7);
- every chunk read in pieces of at most 1 MiB (a lying length cannot make it
  allocate), its type made of letters and its CRC right; PLTE before the image
  data (and present for a palette image), the IDAT chunks consecutive, no
  unknown critical chunk, IEND at the end;
- the image data inflated in bounded pieces, output discarded, must give
  exactly the bytes the header declares: a truncated, corrupt or oversized
  stream is rejected before Pillow allocates the image;
- ancillary chunks (text, ICC profile, EXIF, ...) are checked and skipped, 64
  MiB and 4096 chunks at most; Pillow decodes a copy of the file holding the
  critical chunks only, so no text chunk, which may hold identifiers, reaches
  the metadata.

Conversion: 8- and 16-bit grey (and 1/2/4-bit grey) map exactly to [0, 1]
(``value / (2**bits - 1)``); RGB, RGBA, grey+alpha (LA) and palette (P) images
become grey with the conversion recorded in ``meta["converted_from"]`` and
``meta["conversion"]``: the first channel when the colour channels are equal
(``"equal channels"``, exact), else ITU-R BT.601 luma; alpha is dropped
(``meta["alpha_opaque"]`` says whether it was all opaque). Pillow reduces
16-bit colour to 8 bits. No TensorFlow here.

Every failure raises :class:`PngRejected` (a ``ValueError``) with a one-line
reason. A path is opened through :mod:`morphhr_tf.data.fileio` (a local path,
or a URL such as ``gs://bucket/x.png``); a binary file object is read from its
current position and left open.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from typing import IO, Any

import numpy as np

from morphhr_tf.data import fileio
from morphhr_tf.data.dicom_header import first_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = 100_000_000  # under Pillow's own bomb limit (~179 MP)

_MAX_SIDE = 2**31 - 1
_PIECE = 1 << 20
_ANCILLARY_BYTES = 64 << 20
_ANCILLARY_CHUNKS = 4096
# colour type: (name, samples per pixel, allowed bit depths)
_COLOUR_TYPES = {
    0: ("L", 1, (1, 2, 4, 8, 16)),
    2: ("RGB", 3, (8, 16)),
    3: ("P", 1, (1, 2, 4, 8)),
    4: ("LA", 2, (8, 16)),
    6: ("RGBA", 4, (8, 16)),
}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4))
_ADAM7 += ((1, 0, 2, 2), (0, 1, 1, 2))  # (x0, y0, dx, dy) of the 7 passes


class PngRejected(ValueError):
    """A file that is not a usable PNG image; ``str(err)`` is the one-line reason."""

    def __init__(self, reason: str):
        self.reason = " ".join(str(reason).split())[:240]
        super().__init__(self.reason)


def read_radiograph(
    path_or_file: str | os.PathLike | IO[bytes],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a PNG radiograph as a 2-D grey image.

    Args:
        path_or_file: a local path, a URL (read through
            :mod:`morphhr_tf.data.fileio`), or a binary file object.
        max_pixels: the largest width x height accepted, checked on the header
            before any pixel data is inflated (default 100 MP).

    Returns:
        ``(image, meta)``: ``image`` is float32 H x W in [0, 1] (bright =
        dense, as stored); ``meta`` holds ``rows``, ``columns``, ``bit_depth``,
        ``colour_type`` (``L``, ``RGB``, ``P``, ``LA`` or ``RGBA``),
        ``interlaced``, ``converted_from`` (None for grey, else the colour
        type), ``conversion`` (None, ``"equal channels"`` or ``"luma
        BT.601"``), ``alpha_opaque`` (None without alpha) and
        ``pixel_spacing`` (row, column mm from a pHYs chunk in metres, or
        None). No text chunk is ever copied into ``meta``.

    Raises:
        PngRejected: the file is unreadable, not a PNG, corrupt, truncated or
            too large; the message is a one-line reason.
        ValueError: for invalid arguments (a text-mode file object included).
        MissingFilesystem: a URL whose protocol's package is not installed.

    Example:
        >>> image, meta = read_radiograph("00000001_000.png")  # doctest: +SKIP
        >>> image.shape, meta["converted_from"]  # doctest: +SKIP
        ((1024, 1024), None)
    """
    if (
        not isinstance(max_pixels, int)
        or isinstance(max_pixels, bool)
        or max_pixels < 1
    ):
        raise ValueError(
            f"max_pixels must be a positive integer. Received: {max_pixels!r}"
        )
    if hasattr(path_or_file, "read"):
        return _read(path_or_file, max_pixels)
    if not isinstance(path_or_file, str | os.PathLike):
        raise ValueError(
            "path_or_file must be a path or a binary file object (wrap bytes in "
            f"io.BytesIO). Received: {type(path_or_file).__name__}"
        )
    path = os.fspath(path_or_file)
    try:
        fileio.regular_file_size(path)
    except fileio.UnreadablePath as err:
        raise PngRejected(str(err)) from err
    try:
        with fileio.open_file(path, "rb") as f:
            return _read(f, max_pixels)
    except OSError as err:
        raise PngRejected(f"unreadable file: {err.strerror or err}") from err


def _read(f: IO[bytes], max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        png, header, spacing = _walk(f, max_pixels)
    except OSError as err:
        raise PngRejected(f"unreadable file: {err.strerror or err}") from err
    except MemoryError as err:
        raise PngRejected("out of memory reading the file") from err
    image, meta = _to_grey(_decode(png, header), header)
    meta["pixel_spacing"] = spacing
    return image, meta


def _need_bytes(piece: Any) -> None:
    if not isinstance(piece, bytes | bytearray | memoryview):
        raise ValueError(
            "the file object must be opened in binary mode ('rb'). "
            f"Received read() -> {type(piece).__name__}"
        )


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    """``n`` bytes of ``f``, read in pieces of at most 1 MiB."""
    parts, left = [], n
    while left:
        piece = f.read(min(left, _PIECE))
        _need_bytes(piece)
        if not piece:
            raise PngRejected(f"truncated file (ends inside {what})")
        parts.append(bytes(piece))
        left -= len(piece)
    return b"".join(parts)


def _check_signature(f: IO[bytes]) -> None:
    sig = f.read(8)
    _need_bytes(sig)
    sig = bytes(sig)
    if not sig:
        raise PngRejected("empty file")
    if sig != PNG_SIGNATURE[: len(sig)]:
        kind = "a JPEG file" if sig[:2] == b"\xff\xd8" else "not a PNG file"
        raise PngRejected(f"{kind} (bad signature {sig.hex()})")
    if len(sig) < 8:
        raise PngRejected("truncated file (shorter than the PNG signature)")


def _parse_ihdr(data: bytes, max_pixels: int) -> dict[str, Any]:
    """The image header, checked; raises PngRejected before any decoding."""
    width, height, bits, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", data)
    if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
        raise PngRejected(f"invalid image size {width} x {height}")
    if width * height > max_pixels:
        raise PngRejected(
            f"declared size {width} x {height} = {width * height} pixels exceeds "
            f"max_pixels={max_pixels} (a decompression bomb?)"
        )
    if colour not in _COLOUR_TYPES or bits not in _COLOUR_TYPES[colour][2]:
        raise PngRejected(f"invalid bit depth {bits} for colour type {colour}")
    if comp != 0 or filt != 0 or interlace not in (0, 1):
        raise PngRejected(
            f"invalid compression/filter/interlace method {comp}/{filt}/{interlace}"
        )
    name, samples, _ = _COLOUR_TYPES[colour]
    return {
        "width": width,
        "height": height,
        "bit_depth": bits,
        "colour_type": name,
        "interlaced": interlace == 1,
        "raw_bytes": _raw_bytes(width, height, bits * samples, interlace == 1),
    }


def _raw_bytes(width: int, height: int, pixel_bits: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines the image data must inflate to."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            total += h * (1 + (w * pixel_bits + 7) // 8)
    return total


class _Walker:
    """Walks the chunks after IHDR, checking each, and keeps the critical ones."""

    def __init__(self, f: IO[bytes], header: dict[str, Any], ihdr: bytes):
        self.f, self.header = f, header
        self.expected = header["raw_bytes"]
        self.idat_left = self.expected + self.expected // 50 + (1 << 20)
        self.ancillary_left = [_ANCILLARY_BYTES, _ANCILLARY_CHUNKS]
        self.inflater, self.inflated = zlib.decompressobj(), 0
        self.kept, self.state = [PNG_SIGNATURE, ihdr], "before"
        self.palette, self.spacing = False, None

    def run(self) -> bytes:
        """Reads up to IEND; returns the PNG made of the critical chunks."""
        while True:
            length, ctype = _chunk_head(self.f)
            if ctype == b"IDAT":
                self._idat(length)
                continue
            self.state = "after" if self.state == "in" else self.state
            if ctype == b"IEND":
                self.kept.append(_chunk_body(self.f, ctype, length, 0))
                break
            if ctype == b"PLTE":
                self._plte(length)
            elif ctype[:1].isupper():
                raise PngRejected(f"unexpected critical chunk {ctype.decode()}")
            else:
                self._ancillary(ctype, length)
        if self.state == "before":
            raise PngRejected("no image data (no IDAT chunk)")
        if self.inflated < self.expected:
            raise PngRejected(
                f"image data ends early: {self.inflated} of {self.expected} "
                "bytes (truncated or corrupt)"
            )
        return b"".join(self.kept)

    def _idat(self, length: int) -> None:
        if self.state == "after":
            raise PngRejected("the IDAT chunks are not consecutive")
        if self.header["colour_type"] == "P" and not self.palette:
            raise PngRejected("palette image without a PLTE chunk before IDAT")
        self.state = "in"
        if length + 12 > self.idat_left:
            raise PngRejected("more image data than the header's size allows")
        self.idat_left -= length + 12
        raw = _chunk_body(self.f, b"IDAT", length, length)
        room = self.expected - self.inflated + 1
        self.inflated += _inflate(self.inflater, raw[8:-4], room)
        if self.inflated > self.expected:
            raise PngRejected(
                f"image data inflates beyond the {self.expected} bytes "
                "the header declares"
            )
        self.kept.append(raw)

    def _plte(self, length: int) -> None:
        if self.state != "before" or self.palette:
            raise PngRejected("PLTE chunk out of place (after IDAT, or repeated)")
        if self.header["colour_type"] in ("L", "LA"):
            raise PngRejected("PLTE chunk in a grey image")
        if length % 3 or not 3 <= length <= 768:
            raise PngRejected(f"invalid PLTE chunk of {length} bytes")
        self.kept.append(_chunk_body(self.f, b"PLTE", length, 768))
        self.palette = True

    def _ancillary(self, ctype: bytes, length: int) -> None:
        left = self.ancillary_left
        if length + 12 > left[0]:
            raise PngRejected(
                f"{ctype.decode()} chunk of {length} bytes: over the "
                f"{_ANCILLARY_BYTES >> 20} MiB of ancillary data allowed"
            )
        if left[1] == 0:
            raise PngRejected(f"more than {_ANCILLARY_CHUNKS} ancillary chunks")
        left[0] -= length + 12
        left[1] -= 1
        raw = _chunk_body(self.f, ctype, length, length)
        if ctype == b"pHYs":
            self.spacing = _phys(raw[8:-4])


def _chunk_head(f: IO[bytes]) -> tuple[int, bytes]:
    """``(length, type)`` of the next chunk, both checked for sanity."""
    head = _read_exact(f, 8, "a chunk header")
    length, ctype = struct.unpack(">I", head[:4])[0], head[4:]
    if not (ctype.isascii() and ctype.isalpha()):
        raise PngRejected(f"corrupt chunk type {ctype!r}")
    if length > _MAX_SIDE:
        raise PngRejected(f"corrupt {ctype.decode()} chunk length {length}")
    return length, ctype


def _chunk_body(f: IO[bytes], ctype: bytes, length: int, limit: int) -> bytes:
    """The rest of a chunk, CRC checked: the raw chunk bytes, head included."""
    name = ctype.decode()
    if length > limit:
        raise PngRejected(f"{name} chunk of {length} bytes (at most {limit})")
    data = _read_exact(f, length, f"the {name} chunk")
    crc = _read_exact(f, 4, f"the {name} chunk's CRC")
    if zlib.crc32(ctype + data) != struct.unpack(">I", crc)[0]:
        raise PngRejected(f"corrupt {name} chunk (CRC mismatch)")
    return struct.pack(">I", length) + ctype + data + crc


def _walk(f: IO[bytes], max_pixels: int) -> tuple[bytes, dict[str, Any], Any]:
    """Checks the file; returns ``(png with the critical chunks only, header,
    pixel spacing or None)``."""
    _check_signature(f)
    length, ctype = _chunk_head(f)
    if ctype != b"IHDR" or length != 13:
        raise PngRejected(
            f"the first chunk must be a 13-byte IHDR, not {length} bytes of "
            f"{ctype.decode()}"
        )
    ihdr = _chunk_body(f, ctype, length, 13)
    header = _parse_ihdr(ihdr[8:-4], max_pixels)
    walker = _Walker(f, header, ihdr)
    png = walker.run()
    return png, header, walker.spacing


def _inflate(inflater: Any, data: bytes, room: int) -> int:
    """Inflates ``data`` into at most ``room`` bytes, discarded; their count."""
    total = 0
    try:
        while data and total < room:
            total += len(inflater.decompress(data, min(room - total, _PIECE)))
            data = inflater.unconsumed_tail
    except zlib.error as err:
        raise PngRejected(f"corrupt image data (zlib: {err})") from err
    return total


def _phys(data: bytes) -> tuple[float, float] | None:
    """(row, column) spacing in mm from a pHYs chunk in pixels per metre."""
    if len(data) != 9 or data[8] != 1:
        return None
    per_x, per_y = struct.unpack(">II", data[:8])
    if per_x == 0 or per_y == 0:
        return None
    return (1000.0 / per_y, 1000.0 / per_x)


def _decode(png: bytes, header: dict[str, Any]) -> np.ndarray:
    """Pillow's decoding of the checked file (a palette image as RGB)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(png), formats=("PNG",)) as im:
                im.load()
                arr = np.array(im.convert("RGB") if im.mode == "P" else im)
    except MemoryError as err:
        raise PngRejected("out of memory decoding the image") from err
    except Exception as err:
        raise PngRejected(f"cannot decode the image ({first_line(err)})") from err
    if arr.shape[:2] != (header["height"], header["width"]):
        raise PngRejected(
            f"decoded image has shape {arr.shape}, expected "
            f"{(header['height'], header['width'])}"
        )
    return arr


def _to_grey(
    arr: np.ndarray, header: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Grey float32 in [0, 1] and the metadata describing the conversion."""
    meta = {
        "rows": header["height"],
        "columns": header["width"],
        "bit_depth": header["bit_depth"],
        "colour_type": header["colour_type"],
        "interlaced": header["interlaced"],
        "converted_from": None,
        "conversion": None,
        "alpha_opaque": None,
    }
    if arr.ndim == 2:  # grey: "1" (bool), "L" (2/4-bit scaled to 8) or "I;16"
        top = 65535.0 if header["bit_depth"] == 16 else 255.0
        top = 1.0 if arr.dtype == bool else top
        return arr.astype(np.float32) / np.float32(top), meta
    meta["converted_from"] = header["colour_type"]
    channels = arr.shape[-1]
    if channels in (2, 4):
        meta["alpha_opaque"] = bool(arr[..., -1].min() == 255)
        arr = arr[..., :-1]
    if arr.shape[-1] == 1 or (
        np.array_equal(arr[..., 0], arr[..., 1])
        and np.array_equal(arr[..., 0], arr[..., 2])
    ):
        meta["conversion"] = "equal channels"
        grey = arr[..., 0].astype(np.float32)
    else:
        meta["conversion"] = "luma BT.601"
        rgb = arr.astype(np.float32)
        grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    grey = np.clip(grey / np.float32(255.0), 0.0, 1.0)
    return grey.astype(np.float32), meta
