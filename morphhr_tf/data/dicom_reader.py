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
pydicom's own functions, on every possible stored value, and the image is
mapped through that table: one gather per pixel, the same numbers as applying
the functions to the image (the reference tests check both).

Anything that is not a single-frame monochrome 2-D image, or cannot be read,
raises :class:`DicomRejected` with a one-line reason. Header checks, the size
limit included, run before any pixel decoding, and bound the memory a hostile
file can make the reader use (about 6 bytes per accepted pixel):

- the file may not exceed the largest image ``max_pixels`` allows
  (4 bytes per pixel plus 64 MiB of header) and must be a regular file (no
  FIFO, device, directory or symlink loop);
- a Deflated Explicit VR Little Endian data set is inflated in bounded chunks
  first and rejected when it would exceed 2 bytes per pixel plus 64 MiB
  (pydicom itself inflates the whole stream at once: a deflate bomb);
- a compressed frame must declare the same size as Rows x Columns (the JPEG
  SOF, JPEG-LS SOF55 or JPEG 2000 SIZ marker), and RLE data must be long
  enough to fill it: decoders allocate what the codestream declares.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from morphhr_tf.data.records import normalize_laterality, normalize_view

DEFAULT_MODALITIES = ("MG",)
DEFAULT_MAX_PIXELS = 200_000_000

_MAX_REASON = 240
_HEADER_SLACK = 64 << 20  # bytes of non-pixel data a file may carry
_INFLATE_CHUNK = 1 << 22
_RLE_MAX_RATIO = 64  # one 2-byte RLE run decodes to at most 128 bytes


class DicomRejected(ValueError):
    """A file that is not a usable mammogram; ``str(err)`` is the one-line reason."""

    def __init__(self, reason: str):
        reason = " ".join(str(reason).split())
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 3] + "..."
        super().__init__(reason)
        self.reason = reason


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text}"


def _get(ds: Any, keyword: str, default: Any = None) -> Any:
    try:
        value = ds.get(keyword, default)
    except Exception:  # malformed element value
        return default
    return default if value is None else value


def _int_tag(ds: Any, keyword: str) -> int | None:
    value = _get(ds, keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise DicomRejected(f"malformed {keyword}={value!r}") from err


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):  # multi-valued: keep the first
        value = value[0] if value else ""
    return " ".join(str(value).split())


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


def _expected_bytes(rows: int, cols: int, frames: int, samples: int, bits: int) -> int:
    n = rows * cols * frames * samples
    return (n * bits + 7) // 8


def _check_header(
    ds: Any, modalities: tuple[str, ...] | None, max_pixels: int
) -> dict[str, Any]:
    """Validates everything needed before decoding; returns the geometry."""
    if modalities is not None:
        modality = _text(_get(ds, "Modality")).upper()
        if modality not in modalities:
            shown = modality or "missing"
            raise DicomRejected(
                f"Modality={shown} is not one of {'/'.join(modalities)} "
                "(pass modalities=... to accept others)"
            )
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise DicomRejected("float pixel data is not supported")
        raise DicomRejected("no PixelData")
    frames = _int_tag(ds, "NumberOfFrames")
    if frames is not None and frames != 1:
        raise DicomRejected(
            f"multi-frame (NumberOfFrames={frames}): tomosynthesis is not supported"
        )
    samples = _int_tag(ds, "SamplesPerPixel")
    if samples is None:
        samples = 1
    if samples != 1:
        raise DicomRejected(
            f"SamplesPerPixel={samples}: colour images are not mammograms"
        )
    photometric = _text(_get(ds, "PhotometricInterpretation")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomRejected(
            f"PhotometricInterpretation={photometric or 'missing'}: "
            "only MONOCHROME1/MONOCHROME2 are mammograms"
        )
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise DicomRejected(f"invalid image size Rows={rows} Columns={cols}")
    if rows * cols > max_pixels:
        raise DicomRejected(
            f"declared {rows}x{cols} pixels exceeds the {max_pixels / 1e6:g} MP limit"
        )
    bits_alloc = _int_tag(ds, "BitsAllocated")
    bits_stored = _int_tag(ds, "BitsStored")
    if bits_alloc not in (8, 16, 32):
        raise DicomRejected(f"BitsAllocated={bits_alloc} is not supported")
    if bits_stored is None:
        bits_stored = bits_alloc
    if not 1 <= bits_stored <= bits_alloc:
        raise DicomRejected(
            f"BitsStored={bits_stored} does not fit BitsAllocated={bits_alloc}"
        )
    pixel_rep = _int_tag(ds, "PixelRepresentation") or 0
    if pixel_rep not in (0, 1):
        raise DicomRejected(f"PixelRepresentation={pixel_rep} is not 0 or 1")
    return {
        "rows": rows,
        "columns": cols,
        "bits_allocated": bits_alloc,
        "bits_stored": bits_stored,
        "pixel_representation": pixel_rep,
        "photometric_interpretation": photometric,
    }


def _check_transfer_syntax(ds: Any, geometry: dict[str, Any]) -> str:
    import pydicom
    from pydicom.pixels import get_decoder

    file_meta = getattr(ds, "file_meta", None)
    tsyntax = _get(file_meta, "TransferSyntaxUID") if file_meta is not None else None
    if tsyntax is None:
        raise DicomRejected("no TransferSyntaxUID in the file meta information")
    tsyntax = pydicom.uid.UID(str(tsyntax))
    name = tsyntax.name if tsyntax.is_transfer_syntax else str(tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except Exception as err:
        raise DicomRejected(f"unsupported transfer syntax {name}") from err
    if not decoder.is_available:
        raise DicomRejected(
            f"no decoder available for {name} "
            "(install pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg)"
        )
    if tsyntax.is_compressed and tsyntax.is_encapsulated:
        _check_frame(ds, tsyntax, name, geometry)
    if not tsyntax.is_compressed:
        try:
            size = len(ds.PixelData)
        except Exception as err:
            raise DicomRejected(f"unreadable PixelData ({_first_line(err)})") from err
        need = _expected_bytes(
            geometry["rows"], geometry["columns"], 1, 1, geometry["bits_allocated"]
        )
        if size < need:
            raise DicomRejected(
                f"truncated pixel data: {size} of {need} bytes "
                f"for {geometry['rows']}x{geometry['columns']}"
            )
    return name


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the first SOF marker of a JPEG/JPEG-LS stream."""
    if frame[:2] != b"\xff\xd8":
        return None
    at, end = 2, len(frame)
    while at + 4 <= end:
        if frame[at] != 0xFF:
            return None
        marker = frame[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before SOF
            return None
        length = int.from_bytes(frame[at + 2 : at + 4], "big")
        sof = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if sof or marker == 0xF7:  # SOFn, or JPEG-LS SOF55
            if at + 9 > end or length < 8:
                return None
            rows = int.from_bytes(frame[at + 5 : at + 7], "big")
            cols = int.from_bytes(frame[at + 7 : at + 9], "big")
            return rows, cols
        if length < 2:
            return None
        at += 2 + length
    return None


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the SIZ marker of a JPEG 2000 codestream."""
    at = frame.find(b"\xff\x4f\xff\x51", 0, 1 << 20)  # SOC then SIZ
    if at < 0 or at + 24 > len(frame):
        return None
    # SIZ: FF51 Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) ...
    x, y, x0, y0 = (
        int.from_bytes(frame[at + o : at + o + 4], "big") for o in (8, 12, 16, 20)
    )
    return y - y0, x - x0


def _check_frame(ds: Any, tsyntax: Any, name: str, geometry: dict[str, Any]) -> None:
    """The compressed frame must describe the image the header declares.

    Decoders allocate what the codestream declares, whatever Rows and Columns
    say: a few bytes can otherwise claim gigapixels.
    """
    from pydicom import uid
    from pydicom.encaps import get_frame

    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    except Exception as err:
        raise DicomRejected(
            f"malformed encapsulated pixel data ({_first_line(err)})"
        ) from err
    rows, cols = geometry["rows"], geometry["columns"]
    if tsyntax in uid.RLETransferSyntaxes:
        need = rows * cols * geometry["bits_allocated"] // 8
        if (len(frame) - 64) * _RLE_MAX_RATIO < need:
            raise DicomRejected(
                f"RLE data of {len(frame)} bytes cannot fill {rows}x{cols} "
                "(decompression bomb or truncated data)"
            )
        return
    if tsyntax in uid.JPEG2000TransferSyntaxes:
        size = _j2k_size(frame)
    elif tsyntax in uid.JPEGTransferSyntaxes + uid.JPEGLSTransferSyntaxes:
        size = _jpeg_size(frame)
    else:
        return  # a syntax without a frame header we know; the decoder decides
    if size is None:
        raise DicomRejected(f"no frame header found in the {name} data")
    if size != (rows, cols):
        raise DicomRejected(
            f"the {name} frame is {size[0]}x{size[1]} but the header declares "
            f"{rows}x{cols}"
        )


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

    Applies pydicom's functions to ``arr`` directly (float64). The reader uses
    :func:`_lut_table`, which runs this function on every possible stored value.

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
            voi = f"stored bit range ({voi} unusable: {_first_line(err)})"
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


def _lut_table(ds: Any, dtype: np.dtype) -> tuple[np.ndarray, str] | None:
    """The pipeline evaluated on every value of an 8/16-bit dtype, as float32."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui" or dtype.itemsize > 2:
        return None
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    table, voi = apply_lut_pipeline(values, ds)
    table = table.astype(np.float32)
    if dtype.kind == "i":  # index by the unsigned view of the same bits
        unsigned = values.view(np.dtype(f"u{dtype.itemsize}"))
        reordered = np.empty_like(table)
        reordered[unsigned] = table
        table = reordered
    return table, voi


def _map_pixels(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    built = _lut_table(ds, arr.dtype)
    if built is None:
        image, voi = apply_lut_pipeline(arr, ds)
        if not np.all(np.isfinite(image)):
            raise DicomRejected("non-finite pixel values after the LUTs")
        return image.astype(np.float32), voi
    table, voi = built
    if not np.all(np.isfinite(table)):
        raise DicomRejected("non-finite pixel values after the LUTs")
    index = arr if arr.dtype.kind == "u" else arr.view(f"u{arr.dtype.itemsize}")
    return np.take(table, index), voi


def _check_deflated(path: str, budget: int) -> None:
    """Inflates a deflated data set in bounded chunks, output discarded.

    pydicom inflates the whole stream in one call, so a small file could
    claim gigabytes. Files of other transfer syntaxes pass untouched.
    """
    import zlib

    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with open(path, "rb") as f:
        try:
            read_preamble(f, False)
            meta = _read_file_meta_info(f)
            tsyntax = str(meta.get("TransferSyntaxUID", "") or "")
        except Exception:
            return  # dcmread reports the malformed file
        if tsyntax != pydicom.uid.DeflatedExplicitVRLittleEndian:
            return
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while not inflater.eof:
            data = f.read(_INFLATE_CHUNK) or inflater.unconsumed_tail
            if not data:
                break
            while data and not inflater.eof:
                try:
                    total += len(inflater.decompress(data, _INFLATE_CHUNK))
                except zlib.error as err:
                    raise DicomRejected(f"corrupt deflated data set ({err})") from err
                if total > budget:
                    raise DicomRejected(
                        f"deflated data set inflates beyond {budget >> 20} MiB "
                        "(decompression bomb; raise max_pixels to accept)"
                    )
                data = inflater.unconsumed_tail


class _ClampedFile:
    """A binary file whose ``read(n)`` never asks for more than the bytes left.

    A corrupt element length (say 0xFFFFFFF0) makes pydicom call
    ``read(length)``, and CPython allocates ``length`` bytes before reading
    any. Clamping to the file's size keeps each read within the file.
    """

    def __init__(self, f: Any, size: int):
        self._f = f
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self._f.read()
        return self._f.read(min(n, max(self._size - self._f.tell(), 0)))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def _open(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise DicomRejected(f"unreadable file: {err.strerror or err}") from err
    except ValueError as err:  # e.g. an embedded NUL byte in the path
        raise DicomRejected(f"invalid path ({_first_line(err)})") from err
    if stat.S_ISDIR(info.st_mode):
        raise DicomRejected("is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DicomRejected("not a regular file")
    if info.st_size == 0:
        raise DicomRejected("empty file")
    limit = 4 * max_pixels + _HEADER_SLACK
    if info.st_size > limit:
        raise DicomRejected(
            f"file of {info.st_size >> 20} MiB exceeds the {limit >> 20} MiB "
            f"an image of at most {max_pixels / 1e6:g} MP needs"
        )
    try:
        _check_deflated(path, 2 * max_pixels + _HEADER_SLACK)
        with open(path, "rb") as f:
            return pydicom.dcmread(_ClampedFile(f, info.st_size))
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
        raise DicomRejected(f"malformed DICOM ({_first_line(err)})") from err


def read_mammogram(
    path: str | os.PathLike,
    *,
    modalities: Iterable[str] | None = DEFAULT_MODALITIES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a single-frame monochrome DICOM image.

    Args:
        path: the file.
        modalities: accepted Modality values (``("MG",)`` by default; pass
            ``("CR", "DX")`` for chest X-rays, or ``None`` to accept any).
        max_pixels: the largest Rows x Columns accepted, checked before the
            pixel data is decoded (default 200 MP).

    Returns:
        ``(image, meta)``: ``image`` is float32 H x W in [0, 1] with bright =
        dense tissue; ``meta`` holds ``view``, ``laterality``,
        ``pixel_spacing`` (row, column mm or None), ``manufacturer``,
        ``modality``, ``photometric_interpretation``, ``transfer_syntax``,
        ``voi``, ``rows``, ``columns``, ``bits_stored``. No patient identifier
        is ever copied into ``meta``.

    Raises:
        DicomRejected: the file is unreadable or not a single-frame monochrome
            2-D image; the message is a one-line reason.
        ValueError: for invalid arguments.

    Example:
        >>> image, meta = read_mammogram("1-1.dcm")  # doctest: +SKIP
        >>> image.dtype, meta["view"]  # doctest: +SKIP
        (dtype('float32'), 'CC')
    """
    if isinstance(modalities, str):
        modalities = (modalities,)
    mods = None if modalities is None else tuple(m.upper() for m in modalities)
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive integer. Received: {max_pixels!r}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read(path, mods, max_pixels)


def _read(
    path: str | os.PathLike, mods: tuple[str, ...] | None, max_pixels: int
) -> tuple[np.ndarray, dict[str, Any]]:
    ds = _open(path, max_pixels)
    try:
        geometry = _check_header(ds, mods, max_pixels)
        tsyntax = _check_transfer_syntax(ds, geometry)
    except DicomRejected:
        raise
    except Exception as err:
        raise DicomRejected(f"malformed header ({_first_line(err)})") from err
    try:
        arr = ds.pixel_array
    except MemoryError as err:
        raise DicomRejected("out of memory decoding the pixel data") from err
    except Exception as err:
        raise DicomRejected(
            f"cannot decode {tsyntax} pixel data ({_first_line(err)})"
        ) from err
    shape = (geometry["rows"], geometry["columns"])
    if arr.shape != shape:
        raise DicomRejected(
            f"decoded pixel array has shape {arr.shape}, expected {shape}"
        )
    if arr.dtype.kind not in "uif":
        raise DicomRejected(f"unsupported pixel dtype {arr.dtype}")
    try:
        image, voi = _map_pixels(arr, ds)
    except DicomRejected:
        raise
    except Exception as err:
        raise DicomRejected(f"cannot apply the LUTs ({_first_line(err)})") from err
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
