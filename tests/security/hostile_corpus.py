"""A hostile DICOM corpus, built at test time, and a guarded runner for it.

:func:`build_corpus` derives hostile inputs from every file pydicom bundles
locally and from our synthetic mammograms: truncations, byte flips in the
header and in the pixel data, broken pixel attributes, memory bombs, files
that are not DICOM, odd file-system objects (directory, FIFO, symlink loop,
device) and two conditions that need a patch to simulate (no JPEG decoder
installed, permission denied).

:func:`run_corpus` reads every case with ``read_mammogram`` in a child process
(``python hostile_corpus.py worker ...``) that runs under an address-space
limit (``RLIMIT_AS``) and a per-file ``SIGALRM`` deadline and reports each
case on its own line; a child that dies mid-case (segfault, OOM kill, hang
past the deadline) has that case counted as crashed and is restarted after
it. Outcomes: ``valid`` (finite float32 2-D image in [0, 1]), ``rejected``
(``DicomRejected`` with a non-empty one-line reason) or ``crashed`` (anything
else, including a memory blow-up or a hang).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

PER_FILE_SECONDS = 5  # a read that takes longer is a hang
MEMORY_BUDGET = 2 << 30  # address space a worker may add on top of its imports
RSS_GROWTH_LIMIT = 1 << 30  # peak resident memory one read may add

RESTART = 3  # a worker's exit status after reporting a crash

PATCH_NO_DECODERS = "no_decoders"
PATCH_PERMISSION_DENIED = "permission_denied"
PATCH_HANG = "hang"  # for testing the harness: a read SIGALRM cannot interrupt


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile input: where it is, what it is, and an optional patch."""

    name: str
    path: str
    kind: str
    patch: str = ""


# ----------------------------------------------------------------- builders


def write_mg(
    path: str,
    pixels: np.ndarray,
    *,
    transfer_syntax: str | None = None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Writes a small MG DICOM file (optionally compressed with ``ds.compress``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if transfer_syntax is not None:
        kwargs = {"j2k_cr": [10]} if transfer_syntax.endswith(".4.91") else {}
        ds.compress(transfer_syntax, **kwargs)
    ds.save_as(path, enforce_file_format=True)
    return path


def pixel_data_offset(data: bytes) -> int | None:
    """Byte offset of the value of the top-level (7FE0,0010) element, if found."""
    for tag in (b"\xe0\x7f\x10\x00OB", b"\xe0\x7f\x10\x00OW", b"\xe0\x7f\x10\x00"):
        at = data.rfind(tag)
        if at >= 0:
            return at + (12 if tag.endswith((b"OB", b"OW")) else 8)
    return None


def _flip(data: bytes, lo: int, hi: int, count: int, rng: random.Random) -> bytes:
    out = bytearray(data)
    if hi <= lo:
        return bytes(out)
    for _ in range(count):
        at = rng.randrange(lo, hi)
        out[at] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(out)


def mutations(
    data: bytes, rng: random.Random, *, full: bool
) -> Iterable[tuple[str, bytes]]:
    """Truncations and byte flips of one file's bytes, as ``(kind, bytes)``."""
    size = len(data)
    pix = pixel_data_offset(data)
    cuts = {1, 64, 132, size // 2, size - 1}
    if full:
        cuts |= {128, 131, 140, 200, 400, 1000, size * 3 // 4, size - 2}
    if pix is not None:
        cuts |= {pix - 4, pix, pix + 1}
        if full:
            cuts |= {pix - 8, pix - 1, pix + (size - pix) // 2}
    for cut in sorted(c for c in cuts if 0 < c < size):
        yield f"truncated@{cut}", data[:cut]
    header_end = pix if pix is not None else min(size, 2048)
    for i in range(3 if full else 2):
        yield f"header-flip{i}", _flip(data, 128, header_end, 1 + 3 * i, rng)
    if pix is not None and pix < size:
        for i in range(2 if full else 1):
            yield f"pixel-flip{i}", _flip(data, pix, size, 8 + 64 * i, rng)
    if full:
        yield "zeroed-tail", data[: size // 2] + bytes(size - size // 2)
        yield "doubled", data + data


def _edit(src: str, dst: str, **changes: Any) -> str:
    """Copies ``src`` to ``dst`` with header attributes changed (None deletes)."""
    import pydicom
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    ds = pydicom.dcmread(src)
    for key, value in changes.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        elif isinstance(value, bytes):  # raw value bytes, not validated
            tag = tag_for_keyword(key)
            value += b" " * (len(value) % 2)
            raw = RawDataElement(
                tag, dictionary_VR(tag), len(value), value, 0, False, True
            )
            ds._dict[pydicom.tag.Tag(tag)] = raw
        else:
            setattr(ds, key, value)
    ds.save_as(dst)
    return dst


def _deflate_bomb(path: str, inflated_bytes: int) -> str:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to
    ``inflated_bytes`` (mostly one huge OB element of zeros)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    _ = Dataset  # the dataset is written by hand below
    header = bytearray()

    def element(group, elem, vr, value: bytes):
        header.extend(group.to_bytes(2, "little") + elem.to_bytes(2, "little"))
        header.extend(vr)
        if vr in (b"OB", b"OW", b"UN"):
            header.extend(b"\0\0" + len(value).to_bytes(4, "little"))
        else:
            header.extend(len(value).to_bytes(2, "little"))
        header.extend(value)

    element(0x0008, 0x0060, b"CS", b"MG")
    element(0x0028, 0x0002, b"US", (1).to_bytes(2, "little"))
    element(0x0028, 0x0004, b"CS", b"MONOCHROME2 ")
    element(0x0028, 0x0010, b"US", (8).to_bytes(2, "little"))
    element(0x0028, 0x0011, b"US", (8).to_bytes(2, "little"))
    element(0x0028, 0x0100, b"US", (16).to_bytes(2, "little"))
    element(0x0028, 0x0101, b"US", (12).to_bytes(2, "little"))
    element(0x0028, 0x0102, b"US", (11).to_bytes(2, "little"))
    element(0x0028, 0x0103, b"US", (0).to_bytes(2, "little"))
    payload = inflated_bytes - len(header) - 12
    payload -= payload % 2
    head = bytes(header) + b"\xe0\x7f\x10\x00OB\0\0" + payload.to_bytes(4, "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [compressor.compress(head)]
    block = bytes(1 << 20)
    left = payload
    while left > 0:
        chunks.append(compressor.compress(block[: min(left, len(block))]))
        left -= len(block)
    chunks.append(compressor.flush())
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        from pydicom.filebase import DicomBytesIO

        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_file_meta_info(buf, meta, enforce_standard=True)
        f.write(buf.getvalue())
        for chunk in chunks:
            f.write(chunk)
    return path


def _patch_j2k_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrites the first JPEG 2000 SIZ marker's image size."""
    at = data.find(b"\xff\x51")
    if at < 0:
        return data
    out = bytearray(data)
    # SIZ: FF51 Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) ...
    out[at + 6 : at + 10] = width.to_bytes(4, "big")
    out[at + 10 : at + 14] = height.to_bytes(4, "big")
    return bytes(out)


def _patch_jpeg_sof(data: bytes, width: int, height: int) -> bytes:
    """Rewrites the first JPEG SOF (C0-C3, F7 for JPEG-LS) frame size."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xf7"):
        at = data.find(marker)
        if at >= 0:
            out = bytearray(data)
            # SOF: FFCx Lf(2) P(1) Y(2) X(2)
            out[at + 5 : at + 7] = height.to_bytes(2, "big")
            out[at + 7 : at + 9] = width.to_bytes(2, "big")
            return bytes(out)
    return data


def synthetic_mammograms(folder: str) -> list[str]:
    """Four full synthetic mammograms (one patient, 256 rows) from our generator."""
    from morphhr_tf.synthetic.cbis_ddsm import generate

    generate(folder, patients=1, seed=11, rows=256, rois=False, metadata=False)
    found = []
    for dirpath, _dirs, files in os.walk(folder):
        found.extend(os.path.join(dirpath, n) for n in files if n.endswith(".dcm"))
    return sorted(found)


def pydicom_files() -> list[str]:
    """Every regular file pydicom bundles locally (never downloads)."""
    import pydicom.data

    files = pydicom.data.get_testdata_files()
    return sorted(
        {f for f in files if os.path.isfile(f) and not os.path.islink(f)},
        key=lambda f: (os.path.basename(f), f),
    )


def build_corpus(folder: str, *, seed: int = 0) -> list[Case]:
    """Writes the hostile corpus under ``folder``; returns its cases."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the broken values
        return _build(folder, seed)


def _build(folder: str, seed: int) -> list[Case]:
    import pydicom.data
    from pydicom import uid

    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes | None, kind: str, patch: str = "") -> str:
        path = os.path.join(folder, name)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        cases.append(Case(name, path, kind, patch))
        return path

    good = os.path.join(folder, "_good")
    os.makedirs(good, exist_ok=True)
    mammograms = synthetic_mammograms(os.path.join(good, "synthetic"))
    small = np.random.default_rng(seed).integers(0, 4096, (48, 40)).astype(np.uint16)
    compressed = {
        "j2k": write_mg(
            os.path.join(good, "mg_j2k.dcm"), small, transfer_syntax=uid.JPEG2000
        ),
        "j2k_lossless": write_mg(
            os.path.join(good, "mg_j2kl.dcm"),
            small,
            transfer_syntax=uid.JPEG2000Lossless,
        ),
        "rle": write_mg(
            os.path.join(good, "mg_rle.dcm"), small, transfer_syntax=uid.RLELossless
        ),
    }

    # 1. every bundled pydicom file and every good mammogram, as-is and mutated
    bases = [(f"pydicom_{os.path.basename(p)}", p, False) for p in pydicom_files()]
    bases += [(f"synthetic_{i}", p, True) for i, p in enumerate(mammograms)]
    bases += [(f"mg_{k}", p, True) for k, p in compressed.items()]
    for base_name, path, full in bases:
        with open(path, "rb") as f:
            data = f.read()
        stem = f"{len(cases):04d}_{base_name}"
        add(f"{stem}.dcm", data, "original")
        for kind, mutated in mutations(data, rng, full=full):
            add(f"{stem}__{kind}.dcm", mutated, kind.split("@")[0])

    # 2. broken pixel attributes on a synthetic mammogram
    src = mammograms[0]
    rows = 256

    def edit(name, **changes):
        add(name, None, "attributes")
        _edit(src, cases[-1].path, **changes)

    edit("attr_no_pixeldata.dcm", PixelData=None)
    edit("attr_bits_stored_0.dcm", BitsStored=0)
    edit("attr_bits_stored_17.dcm", BitsStored=17)
    edit("attr_bits_stored_missing.dcm", BitsStored=None)
    for bits in (0, 1, 8, 12, 32, 64, 255):
        edit(f"attr_bits_allocated_{bits}.dcm", BitsAllocated=bits)
    edit("attr_high_bit_99.dcm", HighBit=99)
    edit("attr_pixel_representation_1.dcm", PixelRepresentation=1)
    edit("attr_pixel_representation_7.dcm", PixelRepresentation=7)
    edit("attr_rows_double.dcm", Rows=rows * 2)
    edit("attr_rows_half.dcm", Rows=rows // 2)
    edit("attr_columns_plus1.dcm", Columns=209)
    edit("attr_rows_0.dcm", Rows=0)
    edit("attr_rows_missing.dcm", Rows=None)
    edit("attr_samples_3.dcm", SamplesPerPixel=3)
    edit("attr_frames_2.dcm", NumberOfFrames=2)
    edit("attr_frames_0.dcm", NumberOfFrames=0)
    edit("attr_photometric_rgb.dcm", PhotometricInterpretation="RGB")
    edit("attr_photometric_missing.dcm", PhotometricInterpretation=None)
    edit("attr_window_width_0.dcm", WindowCenter="100", WindowWidth="0")
    edit("attr_window_nan.dcm", WindowCenter=b"nan", WindowWidth=b"inf")
    edit("attr_window_text.dcm", WindowCenter=b"abc", WindowWidth=b"1e999")
    edit("attr_rescale_slope_0.dcm", RescaleSlope="0", RescaleIntercept="0")
    edit("attr_rescale_slope_inf.dcm", RescaleSlope="1e308", RescaleIntercept="1e308")
    edit("attr_rescale_nan.dcm", RescaleSlope=b"nan", RescaleIntercept=b"0")
    edit("attr_rescale_text.dcm", RescaleSlope=b"x", RescaleIntercept=b"1\\2\\3")
    edit("attr_rows_text.dcm", Rows=b"\xff")
    edit("attr_spacing_text.dcm", PixelSpacing=b"a\\b", ViewPosition=b"\xff\xfe")
    edit("attr_voi_function_bogus.dcm", VOILUTFunction="CUBIC")
    edit("attr_modality_missing.dcm", Modality=None)
    edit("attr_transfer_syntax_bogus.dcm")
    import pydicom

    ds = pydicom.dcmread(cases[-1].path)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    ds.save_as(cases[-1].path)

    # 3. memory and decompression bombs
    edit("bomb_declared_65535x65535.dcm", Rows=65535, Columns=65535)
    edit("bomb_declared_14000x14000.dcm", Rows=14000, Columns=14000)
    with open(compressed["j2k"], "rb") as f:
        j2k = f.read()
    add(
        "bomb_j2k_codestream_60000x60000.dcm",
        _patch_j2k_size(j2k, 60000, 60000),
        "bomb",
    )
    add(
        "bomb_j2k_codestream_16000x16000.dcm",
        _patch_j2k_size(j2k, 16000, 16000),
        "bomb",
    )
    for name in ("JPEGLSNearLossless_16.dcm", "JPGExtended.dcm", "SC_rgb_jpeg.dcm"):
        path = pydicom.data.get_testdata_file(name, download=False)
        if path:
            with open(path, "rb") as f:
                jpeg = f.read()
            add(
                f"bomb_sof_65535x65535_{name}",
                _patch_jpeg_sof(jpeg, 65535, 65535),
                "bomb",
            )
    with open(src, "rb") as f:
        data = bytearray(f.read())
    at = pixel_data_offset(bytes(data))
    data[at - 4 : at] = (0xFFFFFFF0).to_bytes(4, "little")  # PixelData length
    add("bomb_pixeldata_length_4GiB.dcm", bytes(data), "bomb")
    add("bomb_j2k_header_14000x14000.dcm", None, "bomb")
    _edit(compressed["j2k"], cases[-1].path, Rows=14000, Columns=14000)
    add("bomb_rle_header_14000x14000.dcm", None, "bomb")
    _edit(compressed["rle"], cases[-1].path, Rows=14000, Columns=14000)
    add("bomb_deflate_1GiB.dcm", None, "bomb")
    _deflate_bomb(cases[-1].path, 1 << 30)

    # 4. compressed syntaxes with no decoder installed (simulated by a patch)
    for name in ("JPEG2000.dcm", "JPGExtended.dcm", "JPEG-lossy.dcm"):
        path = pydicom.data.get_testdata_file(name, download=False)
        if path:
            add(
                f"nodecoder_{name}",
                open(path, "rb").read(),
                "no-decoder",
                PATCH_NO_DECODERS,
            )
    for key in ("j2k", "j2k_lossless"):
        add(
            f"nodecoder_mg_{key}.dcm",
            open(compressed[key], "rb").read(),
            "no-decoder",
            PATCH_NO_DECODERS,
        )

    # 5. not DICOM at all, or not a regular file
    add("text.dcm", b"this is not a DICOM file\n" * 10, "not-dicom")
    add("png.dcm", b"\x89PNG\r\n\x1a\n" + bytes(200), "not-dicom")
    add("random.dcm", bytes(rng.randrange(256) for _ in range(4096)), "not-dicom")
    add("preamble_only.dcm", b"\0" * 128 + b"DICM", "not-dicom")
    add("preamble_junk.dcm", b"\0" * 128 + b"DICM" + b"\xff" * 300, "not-dicom")
    add("zeros.dcm", bytes(1 << 16), "not-dicom")
    add("empty.dcm", b"", "empty")
    os.makedirs(os.path.join(folder, "directory.dcm"))
    add("directory.dcm", None, "directory")
    os.symlink("loop_b.dcm", os.path.join(folder, "loop_a.dcm"))
    os.symlink("loop_a.dcm", os.path.join(folder, "loop_b.dcm"))
    add("loop_a.dcm", None, "symlink-loop")
    os.symlink("self.dcm", os.path.join(folder, "self.dcm"))
    add("self.dcm", None, "symlink-loop")
    os.symlink("no_such_target.dcm", os.path.join(folder, "dangling.dcm"))
    add("dangling.dcm", None, "dangling-symlink")
    os.symlink("/dev/zero", os.path.join(folder, "dev_zero.dcm"))
    add("dev_zero.dcm", None, "device")
    os.mkfifo(os.path.join(folder, "fifo.dcm"))
    add("fifo.dcm", None, "fifo")
    # Unreadable permissions. These tests run as root, for whom chmod 000 does
    # not block reads: the chmod-000 file below is readable by root (and then
    # a valid image), so the denial itself is simulated by a patch that makes
    # open()/os.open() raise PermissionError for the path (PATCH_PERMISSION_DENIED).
    shutil.copy(mammograms[0], os.path.join(folder, "chmod000.dcm"))
    os.chmod(os.path.join(folder, "chmod000.dcm"), 0)
    add("chmod000.dcm", None, "permissions")
    add(
        "denied.dcm",
        open(mammograms[1], "rb").read(),
        "permissions",
        PATCH_PERMISSION_DENIED,
    )
    return cases


# ------------------------------------------------------------ in-place spoils

# Kinds :func:`spoil` applies to a file inside a data set tree, and the
# outcome each must have: ``rejected`` (by the reader, or already at listing
# where the adapter cannot use the entry: a directory, a symlink loop) or
# ``either`` (a random flip may leave a readable image).
SPOILS = {
    "truncated-header": "rejected",
    "truncated-pixels": "rejected",
    "no-pixeldata": "rejected",
    "bits-stored-17": "rejected",
    "rows-double": "rejected",
    "bomb-declared": "rejected",
    "not-dicom": "rejected",
    "empty": "rejected",
    "header-flip": "either",
    "directory": "rejected",
    "symlink-loop": "rejected",
}


def spoil(path: str, kind: str, *, seed: int = 0) -> str:
    """Replaces the DICOM file at ``path`` with a hostile variant of itself.

    Lets a real data set layout (a CBIS-DDSM tree, a manifest's files) carry
    hostile inputs where good images were, so adapters list them as usual.

    Args:
        path: an existing DICOM file; rewritten (or replaced) in place.
        kind: a key of :data:`SPOILS`.
        seed: seed of the random flips.

    Returns:
        ``SPOILS[kind]``, the outcome the input must get.

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in SPOILS:
        raise ValueError(f"kind must be one of {sorted(SPOILS)}. Received: {kind!r}")
    with open(path, "rb") as f:
        data = f.read()
    pix = pixel_data_offset(data) or len(data) // 2
    tmp = path + ".spoil.tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in ("no-pixeldata", "bits-stored-17", "rows-double", "bomb-declared"):
            changes = {
                "no-pixeldata": {"PixelData": None},
                "bits-stored-17": {"BitsStored": 17},
                "rows-double": {"Rows": 2 * int(_rows(path))},
                "bomb-declared": {"Rows": 65535, "Columns": 65535},
            }[kind]
            _edit(path, tmp, **changes)
            os.replace(tmp, path)
            return SPOILS[kind]
    if kind in ("directory", "symlink-loop"):
        os.remove(path)
        if kind == "directory":
            os.makedirs(path)
        else:
            os.symlink(os.path.basename(path), path)
        return SPOILS[kind]
    spoiled = {
        "truncated-header": data[:200],
        "truncated-pixels": data[: pix + (len(data) - pix) // 2],
        "not-dicom": b"this is not a DICOM file\n" * 10,
        "empty": b"",
        "header-flip": _flip(data, 128, pix, 4, random.Random(seed)),
    }[kind]
    with open(path, "wb") as f:
        f.write(spoiled)
    return SPOILS[kind]


def _rows(path: str) -> int:
    import pydicom

    return int(pydicom.dcmread(path, stop_before_pixels=True).Rows)


# ------------------------------------------------------------------ running


def _no_decoders():
    """Context: the JPEG family decoders report no plugin (as if pylibjpeg,
    pylibjpeg-libjpeg, pylibjpeg-openjpeg and Pillow were not installed)."""
    import contextlib

    from pydicom import uid
    from pydicom.pixels import get_decoder

    @contextlib.contextmanager
    def patch():
        saved = []
        for syntax in (
            uid.JPEGTransferSyntaxes
            + uid.JPEGLSTransferSyntaxes
            + uid.JPEG2000TransferSyntaxes
        ):
            try:
                decoder = get_decoder(syntax)
            except NotImplementedError:  # pydicom has no decoder at all
                continue
            saved.append((decoder, dict(decoder._available)))
            decoder._available.clear()
        try:
            yield
        finally:
            for decoder, available in saved:
                decoder._available.update(available)

    return patch()


def _permission_denied(path: str):
    """Context: ``open``/``os.open`` of ``path`` raise PermissionError."""
    import builtins
    import contextlib
    import io

    @contextlib.contextmanager
    def patch():
        real_open, real_os_open = builtins.open, os.open
        target = os.path.realpath(path)

        def denied(file):
            return isinstance(file, str | bytes | os.PathLike) and (
                os.path.realpath(os.fsdecode(file)) == target
            )

        def fake_open(file, *args, **kwargs):
            if denied(file):
                raise PermissionError(13, "Permission denied", os.fsdecode(file))
            return real_open(file, *args, **kwargs)

        def fake_os_open(file, *args, **kwargs):
            if denied(file):
                raise PermissionError(13, "Permission denied", os.fsdecode(file))
            return real_os_open(file, *args, **kwargs)

        builtins.open = io.open = fake_open
        os.open = fake_os_open
        try:
            yield
        finally:
            builtins.open = io.open = real_open
            os.open = real_os_open

    return patch()


class _Deadline(Exception):
    pass


def check_one(path: str, patch: str = "", **kwargs: Any) -> dict[str, Any]:
    """Reads one file and classifies the outcome (in the calling process)."""
    import contextlib

    from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram

    context = contextlib.nullcontext()
    if patch == PATCH_NO_DECODERS:
        context = _no_decoders()
    elif patch == PATCH_PERMISSION_DENIED:
        context = _permission_denied(path)
    elif patch == PATCH_HANG:
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(600)
    try:
        with context:
            image, _meta = read_mammogram(path, **kwargs)
    except DicomRejected as err:
        reason = str(err)
        if not reason.strip() or "\n" in reason or "\r" in reason:
            return {"status": "crashed", "reason": f"bad reason {reason!r}"}
        if "out of memory" in reason.lower() or "MemoryError" in reason:
            return {"status": "crashed", "reason": f"memory blow-up: {reason}"}
        return {"status": "rejected", "reason": reason}
    except _Deadline:
        return {"status": "crashed", "reason": f"hang: over {PER_FILE_SECONDS} s"}
    except BaseException as err:  # everything else is a crash of the reader
        return {"status": "crashed", "reason": f"{type(err).__name__}: {err}"[:300]}
    problem = None
    if not isinstance(image, np.ndarray):
        problem = f"returned {type(image).__name__}"
    elif image.ndim != 2 or image.dtype != np.float32 or image.size == 0:
        problem = f"returned {image.dtype} of shape {image.shape}"
    elif not np.all(np.isfinite(image)):
        problem = "non-finite pixels"
    elif image.min() < 0.0 or image.max() > 1.0:
        problem = f"pixels in [{image.min()}, {image.max()}]"
    if problem:
        return {"status": "crashed", "reason": f"invalid image: {problem}"}
    return {"status": "valid", "reason": ""}


def _worker(cases_file: str, start: int) -> None:
    import resource
    import signal

    import pydicom.pixels  # noqa: F401

    import morphhr_tf.data.dicom_reader  # noqa: F401  (imports before the limit)

    with open("/proc/self/status") as f:
        vm_kb = int(f.read().split("VmSize:")[1].split()[0])
    limit = vm_kb * 1024 + MEMORY_BUDGET
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def on_alarm(signum, frame):
        raise _Deadline()

    signal.signal(signal.SIGALRM, on_alarm)
    with open(cases_file) as f:
        cases = json.load(f)
    for index in range(start, len(cases)):
        case = cases[index]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        begin = time.perf_counter()
        signal.alarm(PER_FILE_SECONDS)
        try:
            outcome = check_one(case["path"], case["patch"], modalities=None)
        except _Deadline:
            outcome = {"status": "crashed", "reason": "hang (deadline in cleanup)"}
        finally:
            signal.alarm(0)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        outcome["seconds"] = round(time.perf_counter() - begin, 3)
        outcome["rss_growth"] = grown
        if grown > RSS_GROWTH_LIMIT and outcome["status"] != "crashed":
            outcome = {
                **outcome,
                "status": "crashed",
                "reason": f"memory blow-up: peak RSS grew {grown >> 20} MiB",
            }
        outcome["index"] = index
        sys.stdout.write(json.dumps(outcome) + "\n")
        sys.stdout.flush()
        if outcome["status"] == "crashed":  # leaked memory must not taint others
            sys.exit(RESTART)


def run_corpus(cases: list[Case], *, startup_seconds: float = 60.0) -> list[dict]:
    """Reads every case in guarded child processes; returns one outcome each.

    Each outcome has ``name``, ``kind``, ``status`` (valid / rejected /
    crashed), ``reason``, ``seconds`` and ``rss_growth`` (bytes).
    """
    import selectors
    import tempfile

    outcomes: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases_file = os.path.join(tmp, "cases.json")
        with open(cases_file, "w") as f:
            json.dump([dataclasses.asdict(c) for c in cases], f)
        start = 0
        while start < len(cases):
            proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "worker"]
                + [cases_file, str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            selector = selectors.DefaultSelector()
            selector.register(proc.stdout, selectors.EVENT_READ)
            current, why = start, None
            # The first line waits for the imports; later ones get twice the
            # per-file deadline. A hang SIGALRM cannot interrupt (a blocking C
            # call) ends here: the child is killed and the case counted crashed.
            wait = startup_seconds + PER_FILE_SECONDS
            while current < len(cases):
                if not selector.select(timeout=wait):
                    proc.kill()
                    why = f"hang: no answer within {wait:g} s (killed)"
                    break
                line = proc.stdout.readline()
                if not line:
                    status = proc.wait()
                    if status != RESTART:
                        why = f"worker died (exit status {status})"
                    break
                item = json.loads(line)
                outcomes[item["index"]] = item
                current = item["index"] + 1
                wait = 2 * PER_FILE_SECONDS
            selector.close()
            proc.stdout.close()
            proc.wait()
            if why is not None:
                outcomes[current] = {
                    "index": current,
                    "status": "crashed",
                    "reason": why or "worker stopped early",
                    "seconds": None,
                    "rss_growth": None,
                }
            start = current + (why is not None)
    return [
        {"name": case.name, "kind": case.kind, **outcomes[index]}
        for index, case in enumerate(cases)
    ]


def count(results: list[dict[str, Any]]) -> dict[str, int]:
    """``files`` / ``valid`` / ``rejected`` / ``crashed`` counts."""
    counts = {"files": len(results), "valid": 0, "rejected": 0, "crashed": 0}
    for item in results:
        counts[item["status"]] += 1
    return counts


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        _worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: hostile_corpus.py worker CASES_JSON START")
