"""Beam ingestion: image records -> serialized tf.Examples, rejects on the side.

:func:`run_ingest` runs :class:`~morphhr_tf.data.ingest_transform.IngestSplits`
(the composite the TFX ExampleGen runs too) on one data set and writes

- ``out_dir/Split-{train,eval,test}/data-*.gz``: gzip TFRecords of tf.Examples
  (see :mod:`morphhr_tf.data.tfrecord_codec`), in an order that depends on
  the records alone, not on Beam's workers (see
  :mod:`morphhr_tf.data.record_order`);
- ``out_dir/rejects.csv``: ``image_key,path,reason`` for every listing problem
  (reason prefixed ``listing:``) and every rejected image, with no patient
  identifier in it (see :mod:`morphhr_tf.data.redaction`);
- ``out_dir/summary.json``: counts (ingested / rejected / per split / per label);
- only when ``private_dir`` is given: ``private_dir/rejects_private.csv``, the
  map from each reject back to its real file (``run_ingest`` refuses a
  ``private_dir`` inside ``out_dir``; see ``docs/privacy.md``).

The Beam transforms live in :mod:`morphhr_tf.data.ingest_transform`, the PHI
redaction in :mod:`morphhr_tf.data.redaction`, the CLI in
:mod:`morphhr_tf.data.ingest_cli`; their public names are importable from
here as well. CLI::

    python -m morphhr_tf.data.ingest --source cbis_ddsm --root DIR --out DIR \\
        [--image-size 896] [--workers 2]

The salt of the patient keys comes from ``$MORPHHR_SALT`` (see
:mod:`morphhr_tf.data.deid`); it is never written to any output.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from morphhr_tf import runtime
from morphhr_tf.data import fileio
from morphhr_tf.data.dicom_reader import DEFAULT_MAX_PIXELS, DEFAULT_MODALITIES
from morphhr_tf.data.ingest_cli import main, run_with_progress
from morphhr_tf.data.ingest_transform import (
    COUNTS,
    EXAMPLES,
    REJECTS,
    STATS,
    SUMMARY_FILE,
    IngestExamples,
    IngestSplits,
    load_counts,
    save_counts,
    write_summary,
)
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE
from morphhr_tf.data.record_order import canonicalize_split
from morphhr_tf.data.redaction import (
    PRIVATE_REJECT_COLUMNS,
    PRIVATE_REJECTS_FILE,
    REJECT_COLUMNS,
    REJECTS_FILE,
    RedactRejects,
    WriteRejectFiles,
    check_private_dir,
    image_keys_of,
    redact_path,
    redact_reject,
    write_rejects,
)
from morphhr_tf.data.splits import SPLITS, check_fractions

__all__ = [
    "COUNTS",
    "EXAMPLES",
    "PRIVATE_REJECTS_FILE",
    "PRIVATE_REJECT_COLUMNS",
    "REJECTS",
    "REJECTS_FILE",
    "REJECT_COLUMNS",
    "STATS",
    "SUMMARY_FILE",
    "IngestExamples",
    "IngestSplits",
    "RedactRejects",
    "image_keys_of",
    "main",
    "redact_path",
    "redact_reject",
    "run_ingest",
    "write_rejects",
]

_WORK_DIR = ".ingest_tmp"


def _clear_outputs(out_dir: str) -> None:
    for split in SPLITS:
        folder = os.path.join(out_dir, f"Split-{split}")
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith("data-"):
                    os.remove(os.path.join(folder, name))
    for name in (REJECTS_FILE, SUMMARY_FILE):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))


def _canonicalize_splits(out_dir: str) -> None:
    """Every split's records in the order their bytes alone decide (an empty
    split as one empty file): see :mod:`morphhr_tf.data.record_order`."""
    for split in SPLITS:
        folder = os.path.join(out_dir, f"Split-{split}")
        os.makedirs(folder, exist_ok=True)
        canonicalize_split(folder)


def _write_outputs(
    outputs: dict[str, Any], out_dir: str, work: str, private_dir: str | None
) -> None:
    """The writes of :func:`run_ingest`'s pipeline: the splits as TFRecords,
    the reject files (as the ExampleGen writes them) and the counts in
    ``work``."""
    for split in SPLITS:
        # Uncompressed: the records are PNGs, which gzip does not shrink;
        # _canonicalize_splits writes the gzip files (stored blocks).
        outputs[EXAMPLES][split] | f"Write{split}" >> beam.io.WriteToTFRecord(
            os.path.join(out_dir, f"Split-{split}", "data"),
            compression_type=CompressionTypes.UNCOMPRESSED,
        )
    _ = outputs[REJECTS] | "WriteRejects" >> WriteRejectFiles(out_dir, private_dir)
    save_counts(outputs, work)


def run_ingest(
    source: str,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    num_workers: int = 1,
    worker_mode: str = "processes",
    salt: str | bytes | None = None,
    eval_fraction: float = 0.2,
    test_fraction: float = 0.0,
    resize_mode: str = "square",
    modalities: tuple[str, ...] | None = DEFAULT_MODALITIES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    source_kwargs: dict[str, Any] | None = None,
    private_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Ingests one data set into gzip TFRecords per split.

    Args:
        source: ``cbis_ddsm``, ``csv``, ``rsna`` or ``vindr``.
        root: the data set folder (the manifest file for ``csv``).
        out_dir: output folder; earlier ``Split-*/data-*.gz``, ``rejects.csv``
            and ``summary.json`` there are replaced.
        image_size: the stored image size, the output side in pixels.
        num_workers: local Beam workers (1 runs in process).
        worker_mode: how more than one worker runs: ``"processes"`` or
            ``"threads"`` (see :data:`morphhr_tf.runtime.WORKER_MODES`).
        salt: see :class:`IngestExamples`.
        eval_fraction, test_fraction: see :mod:`morphhr_tf.data.splits`.
        resize_mode: ``square`` or ``pad``.
        modalities: accepted DICOM Modality values (``None``: any).
        max_pixels: largest declared Rows x Columns accepted.
        progress: show a tqdm progress bar on stderr.
        source_kwargs: extra arguments of the adapter.
        private_dir: a folder outside ``out_dir`` (and outside any artifact or
            pipeline root) for ``rejects_private.csv``, which maps each row of
            ``rejects.csv`` back to its real path; ``None`` (the default)
            writes no re-identification data anywhere. ``rejects.csv``
            itself holds no identifier (see :mod:`morphhr_tf.data.redaction`).

    Returns:
        The summary written to ``summary.json`` (see
        :meth:`IngestSplits.summarize`; ``rejected`` is the row count of
        ``rejects.csv``, rejected images plus listing problems).
        ``ingested + rejected_images == records`` always.

    Raises:
        ValueError: for invalid arguments (``private_dir`` inside ``out_dir``
            included) or an unusable data set root.
    """
    from morphhr_tf.data.adapters import load_source

    check_fractions(eval_fraction, test_fraction)
    beam_args = runtime.beam_pipeline_args(num_workers, worker_mode)  # checks both
    out_dir = os.path.abspath(os.fspath(out_dir))
    if private_dir is not None:
        private_dir = check_private_dir(private_dir, out_dir)
    root = fileio.abspath(root)
    listing = load_source(source, root, **(source_kwargs or {}))
    os.makedirs(out_dir, exist_ok=True)
    _clear_outputs(out_dir)
    work = os.path.join(out_dir, _WORK_DIR)
    shutil.rmtree(work, ignore_errors=True)
    progress_dir = os.path.join(work, "progress")
    os.makedirs(progress_dir)
    start = time.perf_counter()
    ingest = IngestSplits(
        listing.records,
        listing.problems,
        IngestExamples(
            image_size,
            salt,
            eval_fraction,
            resize_mode,
            test_fraction=test_fraction,
            modalities=modalities,
            max_pixels=max_pixels,
            progress_dir=progress_dir,
        ),
        base=fileio.dirname(root) if fileio.isfile(root) else root,
    )
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    if private_dir is not None:
        os.makedirs(private_dir, exist_ok=True)
    _write_outputs(pipeline | "Ingest" >> ingest, out_dir, work, private_dir)
    run_with_progress(pipeline, progress_dir, len(listing.records), progress)

    counts = load_counts(work)
    shutil.rmtree(work, ignore_errors=True)
    _canonicalize_splits(out_dir)
    ran_workers, ran_mode = runtime.beam_workers_of(beam_args)
    summary = ingest.summarize(
        counts,
        source=source,
        num_workers=ran_workers,
        worker_mode=ran_mode,
        start=start,
    )
    write_summary(out_dir, summary)
    return summary


if __name__ == "__main__":
    sys.exit(main())
