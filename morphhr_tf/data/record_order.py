"""One order for a split's records, whatever wrote them.

Beam decides which worker encodes which image and in which order a worker's
records reach which file (``Reshuffle``'s random keys, bundles, the number of
workers). So two ingests of the same data wrote the same records in different
orders, and the training input's seeded shuffle, reproducible only for one
input order, trained different models from the same data set.

:func:`canonicalize_split` rewrites a split's TFRecord files (gzip or
uncompressed: :func:`morphhr_tf.data.ingest.run_ingest` lets Beam write them
uncompressed, TFX's ExampleGen writes gzip) so that the files and the order
of the records in them depend only on the set of records: sorted by the
SHA-256 of their bytes (a fixed pseudo-random order, so one patient's images
do not sit together), cut into ``ceil(total bytes / shard_bytes)`` gzip
files named as Beam names them (``data-00000-of-00002.gz``), with a fixed
gzip header (no time, no name): the same records give the same bytes.

Memory holds a hash, an offset and a length per record: the records are
first copied, once, into a temporary local file (as large as the split's
records, uncompressed), then read from it in sorted order, one output file
at a time. No TensorFlow here (the ingest CLI runs
without it); TFRecord framing is Beam's.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from apache_beam.io.tfrecordio import _TFRecordUtil

from morphhr_tf.data import fileio

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "FILEIO",
    "CanonicalSplit",
    "SplitFiles",
    "canonicalize_split",
]

logger = logging.getLogger(__name__)

#: Records' bytes per output file (before compression).
DEFAULT_SHARD_BYTES = 256 << 20
#: The output's gzip level: stored blocks. The records are mostly PNGs, which
#: deflate does not shrink (62.31 MB of records were 62.32 MB at Beam's level
#: 6, which took 1.1 s against 0.08 s), and TFX's readers need gzip files.
_GZIP_LEVEL = 0


@dataclass(frozen=True)
class CanonicalSplit:
    """What :func:`canonicalize_split` wrote: ``files`` (paths, in order),
    ``records`` and their ``bytes`` (uncompressed, without framing)."""

    files: tuple[str, ...]
    records: int
    bytes: int


@dataclass(frozen=True)
class SplitFiles:
    """How :func:`canonicalize_split` reaches a split's folder: ``names``
    (the file names in a folder, none for a missing one), ``open`` (path,
    ``"rb"`` or ``"wb"``) and ``remove`` (path). :data:`FILEIO` is the
    package's own (local paths, fsspec URLs); TFX's executor passes
    ``tf.io.gfile``'s, which reach ``gs://`` without gcsfs."""

    names: Callable[[str], list[str]]
    open: Callable[[str, str], IO]
    remove: Callable[[str], None]


def _fileio_names(folder: str) -> list[str]:
    for _, _, names in fileio.walk(folder):
        return list(names)
    return []


FILEIO = SplitFiles(names=_fileio_names, open=fileio.open_file, remove=fileio.remove)


def _read_records(files: SplitFiles, path: str) -> Iterator[bytes]:
    """The records of a TFRecord file, gzip if its name ends in ``.gz``."""
    with files.open(path, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
        try:
            while (record := _TFRecordUtil.read_record(f)) is not None:
                yield record
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(
                f"{path} is not a complete TFRecord file ({err}); "
                "re-run the ingest that wrote it"
            ) from err


def _bucket(digest: bytes, buckets: int) -> int:
    """The hash range ``digest`` falls in, of ``buckets`` equal ones."""
    return (int.from_bytes(digest[:8], "big") * buckets) >> 64


def canonicalize_split(
    folder: str,
    *,
    prefix: str = "data-",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    files: SplitFiles = FILEIO,
) -> CanonicalSplit:
    """Rewrites the TFRecord files ``folder/prefix*`` (gzip if named
    ``*.gz``, else uncompressed) as gzip files in canonical order (see the
    module docstring) and returns what it wrote.

    ``folder`` is a local path or a URL, reached through ``files``
    (:class:`SplitFiles`; by default :mod:`morphhr_tf.data.fileio`).
    The input files are removed once every record is in the temporary
    files; an empty split becomes one empty file.

    Raises:
        ValueError: ``shard_bytes`` not positive, or an input file that is
            not a complete gzip TFRecord file (nothing is removed then).
    """
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, int):
        raise ValueError(f"shard_bytes must be an integer. Received: {shard_bytes!r}")
    if shard_bytes < 1:
        raise ValueError(f"shard_bytes must be positive. Received: {shard_bytes}")
    start = time.perf_counter()
    inputs = sorted(
        fileio.join(folder, n) for n in files.names(folder) if n.startswith(prefix)
    )
    with tempfile.TemporaryDirectory(prefix="morphhr_order_") as tmp:
        # Pass 1: every record once into one spill file, sizes counted.
        spill_path = os.path.join(tmp, "spill")
        digests: list[tuple[bytes, int, int]] = []  # (sha256, offset, length)
        offset = 0
        with open(spill_path, "wb") as spill:
            for path in inputs:
                for record in _read_records(files, path):
                    digests.append(
                        (hashlib.sha256(record).digest(), offset, len(record))
                    )
                    spill.write(record)
                    offset += len(record)
        total = offset
        for path in inputs:
            files.remove(path)
        # Pass 2: output file i holds the i-th hash range, sorted.
        count = max(1, math.ceil(total / shard_bytes))
        ranges: list[list[tuple[bytes, int, int]]] = [[] for _ in range(count)]
        for entry in digests:
            ranges[_bucket(entry[0], count)].append(entry)
        written = []
        with open(spill_path, "rb") as spill:
            for i, entries in enumerate(ranges):
                path = fileio.join(folder, f"{prefix}{i:05d}-of-{count:05d}.gz")
                _write_sorted(files, path, sorted(entries), spill)
                written.append(path)
    logger.info(
        "%s: %d records (%.1f MB) in canonical order in %d file(s), %.1f s",
        folder,
        len(digests),
        total / 1e6,
        count,
        time.perf_counter() - start,
    )
    return CanonicalSplit(tuple(written), len(digests), total)


def _write_sorted(files: SplitFiles, path: str, entries, spill) -> None:
    with (
        files.open(path, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0
        ) as out,
    ):
        for _, offset, length in entries:
            spill.seek(offset)
            _TFRecordUtil.write_record(out, spill.read(length))
