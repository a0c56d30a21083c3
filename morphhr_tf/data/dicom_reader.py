"""Reads one mammogram from a DICOM file: pixels in [0, 1] plus safe metadata.

The pixel pipeline follows the DICOM standard's order (PS3.4 N.2.1):

1. modality LUT: ``pydicom.pixels.apply_modality_lut`` (rescale slope and
   intercept, or a Modality LUT Sequence);
2. VOI LUT: ``pydicom.pixels.apply_voi_lut`` (a VOI LUT Sequence, or window
   center/width with the LINEAR, LINEAR_EXACT or SIGMOID function); when the
   file has no VOI, the stored bit range is used;
3. MONOCHROME1 inversion (neither pydicom function inverts).

The output of step 2 is scaled to [0, 1] by its output range: the window's
``[y_min, y_max]`` as the standard defines it, ``0 .. 2**n - 1`` for a VOI LUT
with ``n``-bit entries, or the modality-LUT image of the stored bit range.

For integer pixels of up to 16 bits the three steps are evaluated once, with
pydicom's own functions, on every value the stored bits can hold, and the
image is mapped through that table: one gather per pixel, the same numbers as
applying the functions to the image (the reference tests check both).
:func:`open_mammogram` defers the gather (a :class:`MappedImage`), so the
ingest maps only the pixels it keeps; uncompressed data is not even copied
(a view of the file's bytes, the unused high bits ignored by the table).

Anything that is not a single-frame monochrome 2-D image, or cannot be read,
raises :class:`DicomRejected` with a one-line reason. Header checks, the size
limit included, run before any pixel decoding and bound the memory a hostile
file can make the reader use (about 6 bytes per accepted pixel): file size and
type, deflate bombs, compressed frames whose declared size differs from Rows
x Columns (see :mod:`morphhr_tf.data.dicom_header`). The file is opened
through :mod:`morphhr_tf.data.fileio`: a local path, or a URL such as
``gs://bucket/1-1.dcm`` (the type and size checks then use the object's
listing; the file is opened once, for both the checks and pydicom).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from morphhr_tf.data import deid, fileio
from morphhr_tf.data.dicom_header import (
    DicomRejected,
    _check_deflated,
    _check_header,
    _check_transfer_syntax,
    _ClampedFile,
    _get,
    _text,
    first_line,
)
from morphhr_tf.data.records import normalize_laterality, normalize_view

DEFAULT_MODALITIES = ("MG",)
DEFAULT_MAX_PIXELS = 200_000_000

_HEADER_SLACK = 64 << 20  # bytes of non-pixel data a file may carry


def _view_from_header(ds: Any) -> str:
    view = _text(_get(ds, "ViewPosition"))
    if not view:
        seq = _get(ds, "ViewCodeSequence")
        try:
            if seq:
                view = _text(seq[0].get("CodeMeaning", ""))
        except Exception:
            view = ""
    return normalize_view(view)


def _laterality_from_header(ds: Any) -> str:
    for keyword in ("ImageLaterality", "Laterality", "FrameLaterality"):
        lat = normalize_laterality(_text(_get(ds, keyword)))
        if lat:
            return lat
    return ""


def _salted_keys(ds: Any, salt: str | bytes) -> dict[str, str]:
    """``patient_key`` and ``study_key``: salted hashes of PatientID and
    StudyInstanceUID (``""`` when the tag is absent or empty)."""
    patient = _text(_get(ds, "PatientID"))
    study = _text(_get(ds, "StudyInstanceUID"))
    return {
        "patient_key": deid.patient_key(patient, salt) if patient else "",
        "study_key": deid.study_key(study, salt) if study else "",
    }


def _pixel_spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = _get(ds, keyword)
        try:
            if value is not None and len(value) == 2:
                row, col = float(value[0]), float(value[1])
                if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
                    return (row, col)
        except Exception:
            continue
    return None


def _voi_kind(ds: Any) -> str:
    if _get(ds, "VOILUTSequence"):
        return "VOI LUT sequence"
    if "WindowCenter" in ds and "WindowWidth" in ds:
        func = _text(_get(ds, "VOILUTFunction")).upper() or "LINEAR"
        return f"window {func}"
    return "stored bit range"


def _window_range(ds: Any) -> tuple[float, float]:
    """The output range pydicom's ``apply_windowing`` maps onto."""
    modality_seq = _get(ds, "ModalityLUTSequence")
    if modality_seq:
        y_min, y_max = 0.0, float(2 ** int(modality_seq[0].LUTDescriptor[2]) - 1)
    elif int(_get(ds, "PixelRepresentation", 0)) == 0:
        y_min, y_max = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        y_min = -float(2 ** (int(ds.BitsStored) - 1))
        y_max = float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = _get(ds, "RescaleSlope"), _get(ds, "RescaleIntercept")
    if slope is not None and intercept is not None:
        y_min = y_min * float(slope) + float(intercept)
        y_max = y_max * float(slope) + float(intercept)
    return y_min, y_max


def _stored_range(ds: Any) -> tuple[float, float]:
    """The modality-LUT image of the stored bit range (used when there is no VOI)."""
    from pydicom.pixels import apply_modality_lut

    bits = int(ds.BitsStored)
    if int(_get(ds, "PixelRepresentation", 0)) == 0:
        lo, hi = 0, 2**bits - 1
    else:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    modality_seq = _get(ds, "ModalityLUTSequence")
    if modality_seq:
        return 0.0, float(2 ** int(modality_seq[0].LUTDescriptor[2]) - 1)
    ends = apply_modality_lut(np.array([lo, hi], dtype=np.float64), ds)
    ends = np.asarray(ends, dtype=np.float64)
    return float(ends.min()), float(ends.max())


def _lut_range(ds: Any) -> tuple[float, float]:
    item = ds.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2])
    top = float(2**bits - 1)
    data = np.asarray(item.LUTData).ravel()
    if data.size and float(data.max()) > top:  # mis-declared entry size
        top = float(2 ** int(np.ceil(np.log2(float(data.max()) + 1))) - 1)
    return 0.0, top


def apply_lut_pipeline(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    """Modality LUT -> VOI LUT -> MONOCHROME1 inversion, scaled to [0, 1].

    Applies pydicom's functions to ``arr`` directly (float64); the reader
    runs it once per image, on every possible stored value (:func:`_lut_table`).

    Args:
        arr: stored pixel values (any numeric array).
        ds: the dataset holding the LUT, window and photometric attributes.

    Returns:
        ``(image, voi)``: float64 values in [0, 1], bright = dense, and a
        description of the VOI step that was used.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    voi = _voi_kind(ds)
    values = apply_modality_lut(arr, ds)
    out = None
    if voi != "stored bit range":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = apply_voi_lut(values, ds, index=0)
            lo, hi = _lut_range(ds) if voi == "VOI LUT sequence" else _window_range(ds)
        except Exception as err:  # invalid window/LUT: fall back to bit range
            voi = f"stored bit range ({voi} unusable: {first_line(err)})"
            out = None
    if out is None:
        out = values
        lo, hi = _stored_range(ds)
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        raise DicomRejected(f"empty output range [{lo:g}, {hi:g}] after the LUTs")
    scaled = (np.asarray(out, dtype=np.float64) - lo) / span
    scaled = np.clip(scaled, 0.0, 1.0)
    if _text(_get(ds, "PhotometricInterpretation")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled, voi


def _lut_table(
    ds: Any, dtype: np.dtype, unused_bits: int = 0
) -> tuple[np.ndarray, str] | None:
    """The pipeline on every value of an 8/16-bit dtype, as float32, indexed
    by the unsigned view of the bits (``None``: other dtypes). ``unused_bits``
    high bits, left uncorrected by the decoder, are ignored as pydicom's
    correction would (shift left, then back: zero or sign extension)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui" or dtype.itemsize > 2:
        return None
    codes = np.arange(2 ** (8 * dtype.itemsize), dtype=np.int64)
    values = codes.astype(f"u{dtype.itemsize}").view(dtype)  # entry i: bits i
    corrected = np.right_shift(np.left_shift(values, unused_bits), unused_bits)
    bits = 8 * dtype.itemsize - unused_bits
    low = -(2 ** (bits - 1)) if dtype.kind == "i" else 0
    distinct = np.arange(low, low + 2**bits, dtype=np.int64).astype(dtype)
    mapped, voi = apply_lut_pipeline(distinct, ds)  # only the values that occur
    if not np.all(np.isfinite(mapped)):
        raise DicomRejected("non-finite pixel values after the LUTs")
    return mapped.astype(np.float32)[corrected.astype(np.int64) - low], voi


class MappedImage:
    """A decoded image whose LUT pipeline is applied when it is indexed.

    ``image[rows, cols]`` (basic slices) maps only those pixels, float32 in
    [0, 1], the numbers of the same slice of the mapped image; ``np.asarray``
    maps them all. Args: ``stored``, the H x W pixel values (8/16-bit integers
    with ``table``, else already mapped); ``table``, :func:`_lut_table`'s: an
    entry for every value of ``stored``'s dtype, indexed by its unsigned bits.
    """

    ndim = 2

    def __init__(self, stored: np.ndarray, table: np.ndarray | None = None):
        integers = stored.dtype.kind in "ui" and stored.itemsize <= 2
        if stored.ndim != 2 or (table is not None and not integers):
            raise ValueError(
                "MappedImage needs a 2-D image, of 8/16-bit integers with a table. "
                f"Received: shape={stored.shape}, dtype={stored.dtype}"
            )
        if table is not None and np.shape(table) != (2 ** (8 * stored.itemsize),):
            raise ValueError(
                "MappedImage's table needs an entry for every value of the "
                f"pixels' dtype: {2 ** (8 * stored.itemsize)} for {stored.dtype}. "
                f"Received: a table of shape {np.shape(table)}"
            )
        self.stored = stored
        self.table = table

    @property
    def shape(self) -> tuple[int, int]:
        return self.stored.shape

    def __getitem__(self, key) -> np.ndarray:
        part = self.stored[key]
        if self.table is None:
            return np.asarray(part, dtype=np.float32)
        if part.dtype.kind == "i":  # index by the unsigned view of the same bits
            part = part.view(f"u{part.dtype.itemsize}")
        return _gather(self.table, part)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = self[:, :]
        return full if dtype is None else full.astype(dtype, copy=False)


#: Pixels :func:`_gather` maps per block of rows: numpy's 64-bit copy of a
#: block's indices (2 MiB) stays in cache, where a whole 9 MP crop's would be
#: 72 MB of fresh pages.
GATHER_BLOCK = 1 << 18


def _gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``np.take(table, index)``, the same values, a block of rows at a time.

    ``table`` holds an entry for every value of ``index``'s dtype (8/16-bit
    unsigned), so no index is out of range and ``mode="clip"`` (which lets
    numpy write into ``out`` directly) never clips.
    """
    if index.ndim != 2 or index.size <= GATHER_BLOCK:
        return np.take(table, index)
    out = np.empty(index.shape, dtype=table.dtype)
    rows = max(1, GATHER_BLOCK // index.shape[1])
    for start in range(0, index.shape[0], rows):
        block = slice(start, start + rows)
        np.take(table, index[block], out=out[block], mode="clip")
    return out


def _map_pixels(
    arr: np.ndarray, ds: Any, unused_bits: int = 0
) -> tuple[MappedImage, str]:
    built = _lut_table(ds, arr.dtype, unused_bits)
    if built is not None:
        return MappedImage(arr, built[0]), built[1]
    image, voi = apply_lut_pipeline(arr, ds)
    if not np.all(np.isfinite(image)):
        raise DicomRejected("non-finite pixel values after the LUTs")
    return MappedImage(image.astype(np.float32)), voi


def _decode(ds: Any, geometry: dict[str, Any]) -> tuple[np.ndarray, int]:
    """``(pixels, unused_bits)``: native little-endian 8/16-bit data is a view
    of the file's bytes (the table ignores unused high bits), else ``pixel_array``."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if (
        getattr(syntax, "is_encapsulated", True)
        or not getattr(syntax, "is_little_endian", False)
        or "PixelData" not in ds
        or geometry["bits_allocated"] not in (8, 16)
    ):
        return ds.pixel_array, 0
    ds.pixel_array_options(view_only=True, correct_unused_bits=False)
    return ds.pixel_array, geometry["bits_allocated"] - geometry["bits_stored"]


def _open(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.fspath(path)
    try:
        size = fileio.regular_file_size(path)
    except fileio.UnreadablePath as err:
        raise DicomRejected(str(err)) from err
    if size == 0:
        raise DicomRejected("empty file")
    limit = 4 * max_pixels + _HEADER_SLACK
    if size > limit:
        raise DicomRejected(
            f"file of {size >> 20} MiB exceeds the {limit >> 20} MiB "
            f"an image of at most {max_pixels / 1e6:g} MP needs"
        )
    try:
        with fileio.open_file(path, "rb") as raw:
            f = _ClampedFile(raw, size)
            _check_deflated(f, 2 * max_pixels + _HEADER_SLACK)
            f.seek(0)
            return pydicom.dcmread(f)
    except DicomRejected:
        raise
    except InvalidDicomError as err:
        raise DicomRejected("not a DICOM file (no 'DICM' preamble)") from err
    except MemoryError as err:
        raise DicomRejected("out of memory reading the file") from err
    except OSError as err:
        raise DicomRejected(f"unreadable file: {err.strerror or err}") from err
    except EOFError as err:
        raise DicomRejected("truncated file") from err
    except Exception as err:
        raise DicomRejected(f"malformed DICOM ({first_line(err)})") from err


def read_mammogram(
    path: str | os.PathLike,
    *,
    modalities: Iterable[str] | None = DEFAULT_MODALITIES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    salt: str | bytes | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a single-frame monochrome DICOM image.

    Args:
        path: the file: a local path, or a URL such as ``gs://bucket/1-1.dcm``
            (read through :mod:`morphhr_tf.data.fileio`).
        modalities: accepted Modality values (``("MG",)`` by default; pass
            ``("CR", "DX")`` for chest X-rays, or ``None`` to accept any).
        max_pixels: the largest Rows x Columns accepted, checked before the
            pixel data is decoded (default 200 MP).
        salt: when given (resolved by :func:`morphhr_tf.data.deid.resolve_salt`,
            so ``""`` means ``$MORPHHR_SALT``), ``meta`` also holds
            ``patient_key`` (:func:`~morphhr_tf.data.deid.patient_key` of the
            PatientID) and ``study_key`` (``HMAC(salt, "study:" + UID)`` of the
            StudyInstanceUID), ``""`` for an absent or empty tag. Default
            ``None``: no keys.

    Returns:
        ``(image, meta)``: ``image`` is float32 H x W in [0, 1] with bright =
        dense tissue; ``meta`` holds ``view``, ``laterality``,
        ``pixel_spacing`` (row, column mm or None), ``manufacturer``,
        ``modality``, ``photometric_interpretation``, ``transfer_syntax``,
        ``voi``, ``rows``, ``columns``, ``bits_stored``. No patient identifier
        is ever copied into ``meta``: only their salted keys, on request.

    Raises:
        DicomRejected: the file is unreadable or not a single-frame monochrome
            2-D image; the message is a one-line reason.
        ValueError: for invalid arguments.
        MissingFilesystem: a URL whose protocol's package (``gcsfs`` for
            ``gs://``) is not installed (an ``ImportError``).

    Example:
        >>> image, meta = read_mammogram("1-1.dcm")  # doctest: +SKIP
        >>> image.dtype, meta["view"]  # doctest: +SKIP
        (dtype('float32'), 'CC')
    """
    image, meta = open_mammogram(
        path, modalities=modalities, max_pixels=max_pixels, salt=salt
    )
    return np.asarray(image), meta


def open_mammogram(
    path: str | os.PathLike,
    *,
    modalities: Iterable[str] | None = DEFAULT_MODALITIES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    salt: str | bytes | None = None,
) -> tuple[MappedImage, dict[str, Any]]:
    """:func:`read_mammogram` (same arguments, checks, errors and ``meta``)
    with the image as a :class:`MappedImage`: its slices and ``np.asarray``
    give the pixels ``read_mammogram`` returns. The ingest maps only the
    pixels it keeps (:class:`morphhr_tf.data.preprocessing.CropToBreast`)."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    mods = None if modalities is None else tuple(m.upper() for m in modalities)
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive integer. Received: {max_pixels!r}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _open(path, max_pixels)
        image, meta = _read(ds, mods, max_pixels)
    if salt is not None:
        meta.update(_salted_keys(ds, salt))
    return image, meta


def _read(
    ds: Any, mods: tuple[str, ...] | None, max_pixels: int
) -> tuple[MappedImage, dict[str, Any]]:
    try:
        geometry = _check_header(ds, mods, max_pixels)
        tsyntax = _check_transfer_syntax(ds, geometry)
    except DicomRejected:
        raise
    except Exception as err:
        raise DicomRejected(f"malformed header ({first_line(err)})") from err
    try:
        arr, unused_bits = _decode(ds, geometry)
    except MemoryError as err:
        raise DicomRejected("out of memory decoding the pixel data") from err
    except Exception as err:
        raise DicomRejected(
            f"cannot decode {tsyntax} pixel data ({first_line(err)})"
        ) from err
    if arr.shape != (shape := (geometry["rows"], geometry["columns"])):
        raise DicomRejected(
            f"decoded pixel array has shape {arr.shape}, expected {shape}"
        )
    if arr.dtype.kind not in "uif":
        raise DicomRejected(f"unsupported pixel dtype {arr.dtype}")
    try:
        image, voi = _map_pixels(arr, ds, unused_bits)
    except DicomRejected:
        raise
    except Exception as err:
        raise DicomRejected(f"cannot apply the LUTs ({first_line(err)})") from err
    meta = {
        "view": _view_from_header(ds),
        "laterality": _laterality_from_header(ds),
        "pixel_spacing": _pixel_spacing(ds),
        "manufacturer": _text(_get(ds, "Manufacturer")),
        "modality": _text(_get(ds, "Modality")).upper(),
        "photometric_interpretation": geometry["photometric_interpretation"],
        "transfer_syntax": tsyntax,
        "voi": voi,
        "rows": geometry["rows"],
        "columns": geometry["columns"],
        "bits_stored": geometry["bits_stored"],
    }
    return image, meta
