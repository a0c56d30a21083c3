"""The per-record step of the ingest: one record -> a tf.Example or a reject.

:class:`EncodeFn` is the Beam ``DoFn`` of
:class:`morphhr_tf.data.ingest_transform.IngestExamples`. For each record it

- checks the labels: ``label`` 0 or 1; a multi-label record's ``labels`` as
  many as its data set's :func:`~morphhr_tf.data.adapters.label_names`, 0 or
  1 each, with ``label`` 1 exactly when one of them is (any finding);
- reads the file by its type (:func:`read_image`): a ``.png`` with
  :func:`morphhr_tf.data.png_reader.read_radiograph`, anything else as DICOM
  with :func:`morphhr_tf.data.dicom_reader.read_mammogram`;
- preprocesses by data set (:func:`is_radiograph`): mammograms are cropped to
  the breast and flipped to the canonical chest-wall side
  (:class:`~morphhr_tf.data.preprocessing.MammogramPreprocessor`); the other
  radiographs (ChestX-ray14) keep their field of view and orientation and are
  only area-resized and quantized to 16 bits (``crop=False, orient=False``);
- encodes with :func:`morphhr_tf.data.example_writer.encode_example`, with
  the multi-hot ``labels`` of a multi-label record.

A file or label problem goes to the ``rejects`` output with its one-line
reason, never lost.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import apache_beam as beam
import numpy as np

from morphhr_tf.data.adapters import label_names
from morphhr_tf.data.deid import image_key
from morphhr_tf.data.dicom_header import DicomRejected
from morphhr_tf.data.records import ImageRecord

EXAMPLES, REJECTS, STATS = "examples", "rejects", "stats"
#: Data sets whose images are not mammograms: no crop to a breast, no flip.
RADIOGRAPH_DATASETS = frozenset({"chestxray14"})


class RecordRejected(DicomRejected):
    """A record rejected for its labels or by preprocessing, whatever its file
    type (the one-line reason rules of :class:`DicomRejected`)."""


def is_png(path: str) -> bool:
    """Whether a record's file is read as PNG (by its extension)."""
    return str(path).lower().endswith(".png")


def is_radiograph(record: ImageRecord) -> bool:
    """Whether a record's image is preprocessed without the mammogram steps."""
    return record.dataset in RADIOGRAPH_DATASETS


def read_image(
    path: str, modalities: tuple[str, ...] | None, max_pixels: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads one image by its file type.

    Args:
        path: a ``.png`` (any case) or a DICOM file; local path or URL.
        modalities: accepted DICOM Modality values (DICOM only).
        max_pixels: the largest declared size accepted (a PNG: at most the
            PNG reader's own limit).

    Returns:
        ``(image in [0, 1], meta)``; a PNG's meta has no ``view`` or
        ``laterality``. A DICOM image is a lazily mapped
        :class:`~morphhr_tf.data.dicom_reader.MappedImage` (the preprocessor
        maps only the pixels it keeps; ``np.asarray`` maps them all).

    Raises:
        PngRejected, DicomRejected: an unusable file, with its reason.
    """
    if is_png(path):
        from morphhr_tf.data.png_reader import DEFAULT_MAX_PIXELS, read_radiograph

        return read_radiograph(path, max_pixels=min(max_pixels, DEFAULT_MAX_PIXELS))
    from morphhr_tf.data.dicom_reader import open_mammogram

    return open_mammogram(path, modalities=modalities, max_pixels=max_pixels)


def check_labels(record: ImageRecord) -> None:
    """Raises :class:`RecordRejected` for labels the examples cannot carry."""
    if record.label not in (0, 1):
        raise RecordRejected(f"label {record.label!r} is not 0 or 1")
    if not record.labels:
        return
    names = label_names(record.dataset)
    if len(record.labels) != len(names):
        raise RecordRejected(
            f"{len(record.labels)} labels; data set {record.dataset!r} names "
            f"{len(names)}"
        )
    if any(v not in (0, 1) for v in record.labels):
        raise RecordRejected(f"labels {record.labels!r} are not 0 or 1 each")
    if record.label != int(any(record.labels)):
        raise RecordRejected(
            f"label {record.label} disagrees with the labels (1 when any is 1)"
        )


class EncodeFn(beam.DoFn):
    """Reads, preprocesses and encodes one record; rejects go to a side output.

    Input ``(split, patient key, record)``; outputs ``(split, serialized
    tf.Example)``, tagged ``rejects`` ``(path, reason)`` and tagged ``stats``
    ``(split, label, labels)`` (``labels`` ``()`` for a binary record).
    """

    def __init__(
        self, image_size, resize_mode, salt, modalities, max_pixels, progress_dir
    ):
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.salt = salt
        self.modalities = modalities
        self.max_pixels = max_pixels
        self.progress_dir = progress_dir
        self._pre = self._radiograph = None

    def setup(self):
        import morphhr_tf  # noqa: F401  (runtime policy in worker processes)
        from morphhr_tf.data.preprocessing import MammogramPreprocessor

        self._pre = MammogramPreprocessor(
            image_size=self.image_size, resize_mode=self.resize_mode
        )
        self._radiograph = MammogramPreprocessor(
            image_size=self.image_size,
            resize_mode=self.resize_mode,
            crop=False,
            orient=False,
        )

    def _tick(self):
        if self.progress_dir:
            try:
                # One file per worker, process or thread: <pid>.<thread>.progress
                name = f"{os.getpid()}.{threading.get_ident()}.progress"
                path = os.path.join(self.progress_dir, name)
                with open(path, "ab") as f:
                    f.write(b".")
            except OSError:
                pass

    def _encode(self, pkey: str, record: ImageRecord) -> bytes:
        from morphhr_tf.data.example_writer import encode_example

        check_labels(record)
        image, meta = read_image(record.path, self.modalities, self.max_pixels)
        laterality = record.laterality or meta.get("laterality", "")
        pre = self._radiograph if is_radiograph(record) else self._pre
        try:
            pixels = pre(image, laterality)
        except ValueError as err:
            raise RecordRejected(f"preprocessing: {err}") from err
        return encode_example(
            pixels,
            label=int(record.label),
            patient_key=pkey,
            image_key=image_key(
                f"{record.dataset}:{record.image_id or record.path}", self.salt
            ),
            view=record.view or meta.get("view", ""),
            laterality=laterality,
            density=record.density,
            dataset=record.dataset,
            labels=record.labels,
        )

    def process(self, element):
        from morphhr_tf.data.png_reader import PngRejected

        split, pkey, record = element
        try:
            serialized = self._encode(pkey, record)
        except (DicomRejected, PngRejected) as err:
            yield beam.pvalue.TaggedOutput(REJECTS, (record.path, err.reason))
        except Exception as err:  # never lose a record: report it
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:240]
            yield beam.pvalue.TaggedOutput(
                REJECTS, (record.path, f"internal error: {reason}")
            )
        else:
            yield split, serialized
            stats = (split, int(record.label), tuple(record.labels))
            yield beam.pvalue.TaggedOutput(STATS, stats)
        finally:
            self._tick()
