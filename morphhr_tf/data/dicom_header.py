"""Checks on a DICOM header and its compressed frames, before any pixel is decoded.

Each check bounds what a hostile file can make the reader do:

- :func:`_check_header`: a single-frame monochrome 2-D image of known bit
  depth, with Rows x Columns within ``max_pixels``; anything else is rejected
  before the pixel data is touched, so the declared size caps the allocation.
- :func:`_check_transfer_syntax`: a transfer syntax with an available decoder,
  and native pixel data long enough for the declared size (no truncated
  buffers reach the decoder).
- :func:`_check_frame`: a compressed frame must declare the same size as
  Rows x Columns (the JPEG SOF, JPEG-LS SOF55 or JPEG 2000 SIZ marker), and RLE
  data must be long enough to fill it: decoders allocate what the codestream
  declares, whatever Rows and Columns say, so a few bytes could otherwise claim
  gigapixels.
- :func:`_check_deflated`: a Deflated Explicit VR Little Endian data set is
  inflated in bounded chunks, output discarded, and rejected past a budget:
  pydicom inflates the whole stream in one call (a deflate bomb).
- :class:`_ClampedFile`: a corrupt element length (say 0xFFFFFFF0) makes
  pydicom call ``read(length)``, and CPython allocates ``length`` bytes before
  reading any; clamping each read to the bytes left keeps it within the file.

Every failure raises :class:`DicomRejected` with a one-line reason.
"""

from __future__ import annotations

from typing import Any

_MAX_REASON = 240
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


def first_line(err: BaseException) -> str:
    """``"<ExceptionType>: <message on one line>"``: how a reader quotes an
    error in a rejection reason."""
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
            raise DicomRejected(f"unreadable PixelData ({first_line(err)})") from err
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
            f"malformed encapsulated pixel data ({first_line(err)})"
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


def _check_deflated(f: Any, budget: int) -> None:
    """Inflates a deflated data set in bounded chunks, output discarded.

    pydicom inflates the whole stream in one call, so a small file could
    claim gigabytes. Files of other transfer syntaxes pass untouched. ``f``
    is the open binary file, read from its start; the caller seeks back.
    """
    import zlib

    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_preamble

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
