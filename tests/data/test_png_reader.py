"""Tests of the PNG radiograph reader: exact grey values, colour conversions,
and the header checks that reject bad files before any decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from morphhr_tf.data.png_reader import PNG_SIGNATURE, PngRejected, read_radiograph


def _chunk(ctype: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(ctype + data))
    return struct.pack(">I", len(data)) + ctype + data + crc


def _ihdr(width, height, bits=8, colour=0, interlace=0) -> bytes:
    data = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, interlace)
    return _chunk(b"IHDR", data)


def _scanlines(arr: np.ndarray, interlace: bool = False) -> bytes:
    """Filter-type-0 scanlines of an 8-bit grey array (Adam7 passes if asked)."""
    passes = [(0, 0, 1, 1)]
    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4)]
        passes += [(0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    out = b""
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            out += b"".join(b"\0" + row.tobytes() for row in sub)
    return out


def _png(arr: np.ndarray, *, interlace=False, idat=None, before=(), after=()):
    """A hand-made 8-bit grey PNG; ``idat`` replaces the compressed data."""
    data = zlib.compress(_scanlines(arr, interlace)) if idat is None else idat
    return (
        PNG_SIGNATURE
        + _ihdr(arr.shape[1], arr.shape[0], interlace=int(interlace))
        + b"".join(before)
        + _chunk(b"IDAT", data)
        + b"".join(after)
        + _chunk(b"IEND", b"")
    )


def _pillow_png(image: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


GREY = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)


def test_8bit_grey_from_a_path_is_exact(tmp_path):
    path = tmp_path / "grey.png"
    path.write_bytes(_pillow_png(Image.fromarray(GREY)))
    image, meta = read_radiograph(path)
    assert image.dtype == np.float32 and image.shape == GREY.shape
    assert np.abs(np.round(image.astype(np.float64) * 255) - GREY).max() == 0
    assert meta["bit_depth"] == 8 and meta["colour_type"] == "L"
    assert meta["converted_from"] is None and meta["conversion"] is None
    assert (meta["rows"], meta["columns"]) == GREY.shape
    image2, _ = read_radiograph(str(path))
    np.testing.assert_array_equal(image, image2)


def test_16bit_grey_from_a_file_object_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (29, 31), dtype=np.uint16)
    arr[0, :2] = (0, 65535)
    path = tmp_path / "grey16.png"
    path.write_bytes(_pillow_png(Image.fromarray(arr)))
    with open(path, "rb") as f:
        image, meta = read_radiograph(f)
        assert not f.closed
    assert meta["bit_depth"] == 16 and meta["converted_from"] is None
    assert np.abs(np.round(image.astype(np.float64) * 65535) - arr).max() == 0
    assert image.min() == 0.0 and image.max() == 1.0


def test_interlaced_grey_is_exact():
    image, meta = read_radiograph(io.BytesIO(_png(GREY, interlace=True)))
    assert meta["interlaced"] is True
    assert np.abs(np.round(image * 255.0) - GREY).max() == 0


def test_1bit_grey_maps_to_0_and_1():
    arr = GREY > 128
    image, meta = read_radiograph(io.BytesIO(_pillow_png(Image.fromarray(arr))))
    assert meta["bit_depth"] == 1
    np.testing.assert_array_equal(image, arr.astype(np.float32))


def _colour(kind: str) -> tuple[Image.Image, np.ndarray, str]:
    """(image of mode ``kind``, expected grey in 0..255, expected conversion)."""
    rng = np.random.default_rng(2)
    if kind == "RGB":  # distinct channels: luma
        rgb = rng.integers(0, 256, GREY.shape + (3,), dtype=np.uint8)
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return Image.fromarray(rgb), luma, "luma BT.601"
    if kind == "RGBA":  # as in ChestX-ray14: R = G = B, opaque
        alpha = np.full_like(GREY, 255)
        rgba = np.stack([GREY, GREY, GREY, alpha], axis=-1)
        return Image.fromarray(rgba), GREY, "equal channels"
    if kind == "LA":
        la = Image.merge("LA", [Image.fromarray(GREY), Image.fromarray(GREY // 2)])
        return la, GREY, "equal channels"
    palette = Image.frombytes("P", GREY.shape[::-1], GREY.tobytes())
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    return palette, GREY, "equal channels"


@pytest.mark.parametrize("kind", ["RGB", "RGBA", "LA", "P"])
def test_colour_is_converted_to_grey_and_recorded(kind):
    source, expected, conversion = _colour(kind)
    image, meta = read_radiograph(io.BytesIO(_pillow_png(source)))
    assert image.ndim == 2 and image.dtype == np.float32
    assert meta["converted_from"] == kind == meta["colour_type"]
    assert meta["conversion"] == conversion
    assert meta["alpha_opaque"] == {"RGBA": True, "LA": False}.get(kind)
    assert np.abs(image.astype(np.float64) * 255 - expected).max() < 1e-3


def test_text_chunks_never_reach_the_metadata_and_phys_gives_the_spacing():
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "DOE^JANE 1234567")
    data = _pillow_png(Image.fromarray(GREY), pnginfo=info, dpi=(254, 254))
    assert b"DOE^JANE" in data
    image, meta = read_radiograph(io.BytesIO(data))
    assert "DOE" not in repr(meta) and np.isfinite(image).all()
    assert meta["pixel_spacing"] == pytest.approx((0.1, 0.1))


def _bad_files() -> dict[str, tuple[bytes, str]]:
    """Name: (file bytes, the reason expected)."""
    tiny = np.zeros((16, 16), np.uint8)
    good = _png(tiny)
    raw = _scanlines(tiny)
    ihdr_crc_broken = bytearray(good)
    ihdr_crc_broken[8 + 8 + 13] ^= 0xFF  # the IHDR chunk's CRC
    huge = PNG_SIGNATURE + _ihdr(60000, 60000)  # nothing after the header
    return {
        "empty": (b"", "empty file"),
        "text": (b"Image Index,Finding Labels\n", "not a PNG file"),
        "jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG file"),
        "short": (PNG_SIGNATURE[:5], "shorter than the PNG signature"),
        "truncated": (good[: len(good) // 2], "truncated file"),
        "no_iend": (good[:-12], "truncated file"),
        "huge": (huge, r"declared size 60000 x 60000 = 3600000000 pixels exceeds"),
        "zero_width": (PNG_SIGNATURE + _ihdr(0, 16), "invalid image size 0 x 16"),
        "bad_depth": (PNG_SIGNATURE + _ihdr(8, 8, 4, 2), "invalid bit depth 4"),
        "ihdr_crc": (bytes(ihdr_crc_broken), "IHDR chunk \\(CRC mismatch\\)"),
        "first_not_ihdr": (PNG_SIGNATURE + _chunk(b"tEXt", b"a\0b"), "first chunk"),
        "bomb": (
            _png(tiny, idat=zlib.compress(bytes(10_000_000))),
            "inflates beyond the 272 bytes",
        ),
        "short_stream": (
            _png(tiny, idat=zlib.compress(raw)[:-30]),
            "image data ends early",
        ),
        "garbage_stream": (_png(tiny, idat=b"\x00" * 64), "corrupt image data"),
        "no_idat": (PNG_SIGNATURE + _ihdr(4, 4) + _chunk(b"IEND", b""), "no IDAT"),
        "lying_length": (
            PNG_SIGNATURE + _ihdr(4, 4) + struct.pack(">I", 0x7FFFFFF0) + b"zTXt",
            "zTXt chunk of 2147483632 bytes",
        ),
        "critical": (_png(tiny, before=[_chunk(b"ABCD", b"")]), "critical chunk ABCD"),
        "split_idat": (
            _png(tiny, after=[_chunk(b"tEXt", b"a\0b"), _chunk(b"IDAT", b"")]),
            "not consecutive",
        ),
        "palette_no_plte": (
            good.replace(_ihdr(16, 16), _ihdr(16, 16, 8, 3)),
            "without a PLTE",
        ),
    }


@pytest.mark.parametrize("name", sorted(_bad_files()))
def test_bad_files_are_rejected_with_a_reason_before_decoding(name, monkeypatch):
    data, reason = _bad_files()[name]
    opened = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a))
    with pytest.raises(PngRejected, match=reason) as err:
        read_radiograph(io.BytesIO(data))
    assert "\n" not in str(err.value) and err.value.reason == str(err.value)
    assert opened == []  # Pillow never saw the file


def test_mutated_files_are_rejected_or_read_never_crash():
    """Seeded structure-aware fuzzing: chunks mutated or cut, CRCs fixed up."""
    rng = np.random.default_rng(3)
    sources = [
        Image.fromarray(GREY),
        Image.fromarray(GREY.astype(np.uint16) * 257),
        Image.fromarray(np.stack([GREY] * 4, axis=-1)),
        Image.fromarray(GREY).convert("P"),
    ]
    chunk_lists = [_split_chunks(_pillow_png(im)) for im in sources]
    for trial in range(200):
        chunks = [[t, bytearray(d)] for t, d in chunk_lists[trial % len(sources)]]
        target = chunks[rng.integers(len(chunks))]
        if target[1] and rng.uniform() < 0.8:
            target[1][rng.integers(len(target[1]))] = rng.integers(256)
        else:
            target[1] = target[1][: rng.integers(len(target[1]) + 1)]
        data = PNG_SIGNATURE + b"".join(_chunk(t, bytes(d)) for t, d in chunks)
        try:
            image, _ = read_radiograph(io.BytesIO(data))
        except PngRejected:
            continue
        assert image.ndim == 2 and np.isfinite(image).all()
        assert 0.0 <= image.min() and image.max() <= 1.0


def _split_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def test_max_pixels_is_checked_on_the_header():
    data = _png(np.zeros((20, 20), np.uint8))
    with pytest.raises(PngRejected, match="max_pixels=399"):
        read_radiograph(io.BytesIO(data), max_pixels=399)
    image, _ = read_radiograph(io.BytesIO(data), max_pixels=400)
    assert image.shape == (20, 20)


def test_bad_paths_are_rejected(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(PngRejected, match="empty file"):
        read_radiograph(tmp_path / "empty.png")
    with pytest.raises(PngRejected, match="is a directory"):
        read_radiograph(tmp_path)
    with pytest.raises(PngRejected, match="unreadable file"):
        read_radiograph(tmp_path / "missing.png")


def test_bad_arguments_raise_value_errors(tmp_path):
    path = tmp_path / "grey.png"
    path.write_bytes(_png(GREY))
    with open(path, encoding="latin-1") as text:
        with pytest.raises(ValueError, match="binary mode") as err:
            read_radiograph(text)
    assert not isinstance(err.value, PngRejected)
    with pytest.raises(ValueError, match="io.BytesIO"):
        read_radiograph(path.read_bytes())
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
            read_radiograph(path, max_pixels=bad)
