"""Beam ingestion: image records -> serialized tf.Examples, rejects on the side.

:class:`IngestExamples` is the PTransform (used by the CLI and by the TFX
ExampleGen); :func:`run_ingest` runs it on one data set and writes

- ``out_dir/Split-{train,eval,test}/data-*.gz``: gzip TFRecords of tf.Examples
  (see :mod:`morphhr_tf.data.tfrecord_codec`);
- ``out_dir/rejects.csv``: ``image_key,path,reason`` for every listing problem
  (reason prefixed ``listing:``) and every rejected image, with no patient
  identifier in it (see "Rejects and privacy" below);
- ``out_dir/summary.json``: counts (ingested / rejected / per split / per label);
- only when ``private_dir`` is given: ``private_dir/rejects_private.csv``, the
  map from each reject back to its real file.

Rejects and privacy: file paths carry identifiers (CBIS-DDSM case folders
hold the patient id, ``Mass-Training_P_00001_LEFT_CC``; RSNA folders are
patient ids; UID and date folders identify studies), so no real path goes into
an output artifact. :func:`redact_reject` turns a ``(path, reason)`` reject
into ``(image_key, redacted path, redacted reason)``: ``image_key`` is the
salted image key the tf.Examples carry (empty for listing problems); in the
path, every component that could identify someone is replaced by a salted
hash (``h`` + 12 hex digits; a CBIS case folder keeps its type, side and view
and gets ``p`` + the first 12 hex digits of the patient key instead of the
patient id), and those values are scrubbed from the reason too. The real
paths are written only to ``rejects_private.csv`` in ``private_dir``, a folder
the caller keeps outside any artifact or pipeline root (``run_ingest``
refuses one inside ``out_dir``). See ``docs/privacy.md``.

CLI::

    python -m morphhr_tf.data.ingest --source cbis_ddsm --root DIR --out DIR \\
        [--size 896] [--workers 2]

The salt of the patient keys comes from ``$MORPHHR_SALT`` (see
:mod:`morphhr_tf.data.deid`); it is never written to any output.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from morphhr_tf import runtime
from morphhr_tf.data.deid import (
    SALT_ENV,
    image_key,
    patient_key,
    resolve_salt,
    salted_hash,
)
from morphhr_tf.data.dicom_reader import DEFAULT_MAX_PIXELS, DEFAULT_MODALITIES
from morphhr_tf.data.records import ImageRecord
from morphhr_tf.data.splits import (
    SPLITS,
    assign_split,
    check_fractions,
    combine_official,
)

EXAMPLES, REJECTS, STATS = "examples", "rejects", "stats"
REJECT_COLUMNS = ("image_key", "path", "reason")
PRIVATE_REJECT_COLUMNS = ("image_key", "path", "source_path", "reason")
REJECTS_FILE = "rejects.csv"
PRIVATE_REJECTS_FILE = "rejects_private.csv"

# Path components kept verbatim in redacted paths: fixed folder and file names
# of the supported layouts, which name no person, study or date.
_SAFE_COMPONENTS = {
    "cbis-ddsm",
    "images",
    "train_images",
    "test_images",
    "alldicoms",
    "dicom",
    "metadata.csv",
    "manifest.csv",
    "train.csv",
    "test.csv",
    "breast-level_annotations.csv",
    "finding_annotations.csv",
    "inbreast.csv",
}
_SAFE_NAME_RE = re.compile(
    r"^(?:(?:mass|calc)_case_description_(?:train|test)_set\.csv"
    r"|\d{1,2}-\d{1,3}\.dcm|0{5}\d\.dcm)$",
    re.IGNORECASE,
)
_CASE_RE = re.compile(
    r"^((?:Mass|Calc)-(?:Training|Test)_)(P_\d+)(_(?:LEFT|RIGHT)_(?:CC|MLO)(?:_\d+)?)$",
    re.IGNORECASE,
)
_LISTING_WHERE_RE = re.compile(r"^([^/\\:]+ line \d+)(?:: (.*))?$", re.DOTALL)
_PATIENT_RE = re.compile(r"\bP_\d{3,}\b")
_UID_RE = re.compile(r"\b\d+(?:\.\d+){4,}\b")


def _assign(
    element: tuple[str, Iterable[ImageRecord]],
    salt: bytes,
    eval_fraction: float,
    test_fraction: float,
):
    patient_id, records = element
    records = list(records)
    key = patient_key(patient_id, salt)
    split = assign_split(
        key, combine_official(r.split for r in records), eval_fraction, test_fraction
    )
    for record in records:
        yield split, key, record


class _EncodeFn(beam.DoFn):
    """Reads, preprocesses and encodes one record; rejects go to a side output."""

    def __init__(self, size, resize_mode, salt, modalities, max_pixels, progress_dir):
        self.size = size
        self.resize_mode = resize_mode
        self.salt = salt
        self.modalities = modalities
        self.max_pixels = max_pixels
        self.progress_dir = progress_dir
        self._pre = None

    def setup(self):
        import morphhr_tf  # noqa: F401  (runtime policy in worker processes)
        from morphhr_tf.data.preprocessing import MammogramPreprocessor

        self._pre = MammogramPreprocessor(size=self.size, resize_mode=self.resize_mode)

    def _tick(self):
        if self.progress_dir:
            try:
                path = os.path.join(self.progress_dir, f"{os.getpid()}.progress")
                with open(path, "ab") as f:
                    f.write(b".")
            except OSError:
                pass

    def process(self, element):
        from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram
        from morphhr_tf.data.tfrecord_codec import encode_example

        split, pkey, record = element
        try:
            if record.label not in (0, 1):
                raise DicomRejected(f"label {record.label!r} is not 0 or 1")
            image, meta = read_mammogram(
                record.path, modalities=self.modalities, max_pixels=self.max_pixels
            )
            laterality = record.laterality or meta["laterality"]
            try:
                pixels = self._pre(image, laterality)
            except ValueError as err:
                raise DicomRejected(f"preprocessing: {err}") from err
            serialized = encode_example(
                pixels,
                label=int(record.label),
                patient_key=pkey,
                image_key=image_key(
                    f"{record.dataset}:{record.image_id or record.path}", self.salt
                ),
                view=record.view or meta["view"],
                laterality=laterality,
                density=record.density,
                dataset=record.dataset,
            )
        except DicomRejected as err:
            yield beam.pvalue.TaggedOutput(REJECTS, (record.path, err.reason))
        except Exception as err:  # never lose a record: report it
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:240]
            yield beam.pvalue.TaggedOutput(
                REJECTS, (record.path, f"internal error: {reason}")
            )
        else:
            yield split, serialized
            yield beam.pvalue.TaggedOutput(STATS, (split, int(record.label)))
        finally:
            self._tick()


class IngestExamples(beam.PTransform):
    """PCollection[ImageRecord] -> tagged outputs of tf.Examples and rejects.

    Outputs (a ``DoOutputsTuple``; use ``result.examples`` or
    ``result["examples"]``):

    - ``examples``: ``(split, serialized tf.Example bytes)``; ``split`` is
      ``train``, ``eval`` or ``test``, patient-level and deterministic (see
      :mod:`morphhr_tf.data.splits`);
    - ``rejects``: ``(path, reason)`` for each record that could not be used.
      The path is the real file path, which can identify a patient: never
      write it to an artifact as is; pass the rejects through
      :class:`RedactRejects` (in a pipeline) or :func:`write_rejects`;
    - ``stats``: ``(split, label)`` for each ingested record.

    Every input lands in exactly one of ``examples`` and ``rejects``.

    Args:
        size: output side in pixels.
        salt: salt of the patient/image keys (``None``: ``$MORPHHR_SALT``,
            else the development salt). Resolved when the pipeline is built.
        eval_fraction: share of training patients carved out for ``eval``.
        resize_mode: ``square`` or ``pad``.
        test_fraction: share of patients without an official split sent to
            ``test``.
        modalities: accepted DICOM Modality values (``None``: any).
        max_pixels: largest declared Rows x Columns accepted.
        progress_dir: optional folder where workers append one byte per
            processed record (read by :func:`run_ingest`'s progress bar).
    """

    def __init__(
        self,
        size: int = 896,
        salt: str | bytes | None = None,
        eval_fraction: float = 0.2,
        resize_mode: str = "square",
        *,
        test_fraction: float = 0.0,
        modalities: tuple[str, ...] | None = DEFAULT_MODALITIES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress_dir: str | None = None,
        label: str | None = None,
    ):
        super().__init__(label)
        from morphhr_tf.data.preprocessing import Resize

        Resize(size, resize_mode)  # validates both
        check_fractions(eval_fraction, test_fraction)
        self.size = size
        self.salt = salt
        self.eval_fraction = eval_fraction
        self.resize_mode = resize_mode
        self.test_fraction = test_fraction
        self.modalities = None if modalities is None else tuple(modalities)
        self.max_pixels = max_pixels
        self.progress_dir = progress_dir

    def expand(self, records):
        salt = resolve_salt(self.salt)
        return (
            records
            | "KeyByPatient" >> beam.Map(lambda r: (r.patient_id, r))
            | "GroupByPatient" >> beam.GroupByKey()
            | "AssignSplit"
            >> beam.FlatMap(_assign, salt, self.eval_fraction, self.test_fraction)
            | "Spread" >> beam.Reshuffle()
            | "Encode"
            >> beam.ParDo(
                _EncodeFn(
                    self.size,
                    self.resize_mode,
                    salt,
                    self.modalities,
                    self.max_pixels,
                    self.progress_dir,
                )
            ).with_outputs(REJECTS, STATS, main=EXAMPLES)
        )


def _component_hash(value: str, salt: bytes) -> str:
    return "h" + salted_hash("path-component:" + value, salt)[:12]


def _redact_component(part: str, salt: bytes) -> str:
    if part in ("", ".", "..") or part.lower() in _SAFE_COMPONENTS:
        return part
    if _SAFE_NAME_RE.match(part):
        return part
    case = _CASE_RE.match(part)
    if case:
        return (
            case.group(1) + "p" + patient_key(case.group(2), salt)[:12] + case.group(3)
        )
    stem, ext = os.path.splitext(part)
    if ext.lower() in (".dcm", ".dicom", ".csv", ".png") and stem:
        return _component_hash(stem, salt) + ext
    return _component_hash(part, salt)


def redact_path(
    path: str, base: str | os.PathLike | None = None, salt: str | bytes | None = None
) -> str:
    """A path with every component that could identify someone hashed.

    The path is made relative to ``base`` when it lies inside it. Kept as
    they are: the fixed names of the supported layouts (``CBIS-DDSM``,
    ``train_images``, the CBIS-DDSM CSV names, ``1-1.dcm``, ``000000.dcm``,
    ...); a CBIS-DDSM case folder keeps its type, side and view, its patient
    id replaced by ``p`` + the first 12 hex digits of the salted patient key;
    any other component becomes ``h`` + 12 hex digits of its salted hash
    (file extensions kept). Equal components hash equally under one salt.

    Args:
        path: a file path (absolute or relative) or a ``pid/iid`` fragment.
        base: the data set root; ``None`` keeps the path as given.
        salt: the salt (``None``: ``$MORPHHR_SALT`` or the development salt).

    Returns:
        The redacted path, ``/``-separated.

    Example:
        >>> redact_path("/d/Mass-Training_P_00001_LEFT_CC/1.2.3.4.5/1-1.dcm",
        ...             "/d", "s")  # doctest: +SKIP
        'Mass-Training_p3c9d...._LEFT_CC/h5be1..../1-1.dcm'
    """
    key = resolve_salt(salt)
    text = os.fspath(path)
    if base is not None:
        text = _relative(text, os.fspath(base))
    parts = re.split(r"[/\\]+", text)
    return "/".join(_redact_component(p, key) for p in parts)


def _scrub(text: str, originals: list[tuple[str, str]], salt: bytes) -> str:
    """Replaces known identifying strings, then CBIS patient ids and UIDs."""
    for original, redacted in sorted(originals, key=lambda kv: -len(kv[0])):
        if len(original) >= 3 and original != redacted:
            text = text.replace(original, redacted)
    text = _PATIENT_RE.sub(lambda m: "p" + patient_key(m.group(0), salt)[:12], text)
    return _UID_RE.sub(lambda m: _component_hash(m.group(0), salt), text)


def redact_reject(
    path: str,
    reason: str,
    *,
    base: str | os.PathLike | None = None,
    salt: str | bytes | None = None,
    image_keys: Mapping[str, str] | None = None,
) -> tuple[str, str, str]:
    """A ``(path, reason)`` reject -> ``(image_key, redacted path, reason)``.

    The result can go into an artifact: see :func:`redact_path` for the path;
    the identifying values of the path (and CBIS patient ids and DICOM UIDs)
    are replaced in the reason as well. ``path`` may also be a listing
    location such as ``"mass_case_description_train_set.csv line 7: <path>"``.

    Args:
        path: the rejected file (or listing location), as ``IngestExamples``'
            ``rejects`` output or ``SourceListing.problems`` give it.
        reason: the one-line reason.
        base: the data set root (paths are shown relative to it).
        salt: the salt of the keys and hashes.
        image_keys: real path -> salted image key (see :func:`image_keys_of`);
            a path not in it gets an empty key.

    Returns:
        ``(image_key, path, reason)``, the columns of ``rejects.csv``
        (:data:`REJECT_COLUMNS`).
    """
    key = resolve_salt(salt)
    where = os.fspath(path)
    prefix, rest = "", where
    listing = _LISTING_WHERE_RE.match(where)
    if listing and not os.path.isabs(where):
        label, rest = listing.group(1), listing.group(2) or ""
        name, _, line = label.rpartition(" line ")
        prefix = f"{redact_path(name, None, key)} line {line}"
    redacted = redact_path(rest, base, key) if rest else ""
    shown = f"{prefix}: {redacted}" if prefix and redacted else prefix or redacted
    originals = [(where, shown)]
    rel = _relative(rest, os.fspath(base)) if base is not None and rest else rest
    if rel:
        originals.append((rel, redact_path(rel, None, key)))
    # the components inside the data set (not those of the root folder, which
    # identify no one and may be common words such as "data")
    for part in re.split(r"[/\\]+", rel):
        if part.strip():
            originals.append((part, _redact_component(part, key)))
    clean_reason = " ".join(_scrub(str(reason), originals, key).split())
    return (image_keys or {}).get(where, ""), shown, clean_reason


def image_keys_of(
    records: Iterable[ImageRecord], salt: str | bytes | None = None
) -> dict[str, str]:
    """Real path -> the salted image key its tf.Example carries."""
    key = resolve_salt(salt)
    return {
        r.path: image_key(f"{r.dataset}:{r.image_id or r.path}", key) for r in records
    }


class RedactRejects(beam.PTransform):
    """PCollection[(path, reason)] -> PCollection[(image_key, path, reason)].

    The Beam form of :func:`redact_reject`, for writers of ``rejects.csv``
    inside a pipeline (the TFX ExampleGen): format each output tuple as one
    CSV row under the header :data:`REJECT_COLUMNS`.

    Args:
        base: the data set root.
        salt: the salt (``None``: resolved from ``$MORPHHR_SALT`` when the
            pipeline is built); use the salt given to :class:`IngestExamples`.
        records: the ingested records, for the image keys of rejected images.
    """

    def __init__(
        self,
        base: str | os.PathLike | None = None,
        salt: str | bytes | None = None,
        records: Iterable[ImageRecord] = (),
        label: str | None = None,
    ):
        super().__init__(label)
        self.base = None if base is None else os.fspath(base)
        self.salt = salt
        self.records = list(records)

    def expand(self, rejects):
        salt = resolve_salt(self.salt)
        keys = image_keys_of(self.records, salt)
        return rejects | "Redact" >> beam.MapTuple(
            lambda path, reason: redact_reject(
                path, reason, base=self.base, salt=salt, image_keys=keys
            )
        )


def _check_private_dir(private_dir: str, out_dir: str) -> str:
    private = os.path.realpath(os.fspath(private_dir))
    out = os.path.realpath(os.fspath(out_dir))
    if private == out or private.startswith(out.rstrip(os.sep) + os.sep):
        raise ValueError(
            "private_dir holds re-identification data and must lie outside the "
            f"output folder. Received: private_dir={private_dir!r} inside "
            f"out_dir={out_dir!r}"
        )
    return private


def write_rejects(
    out_dir: str | os.PathLike,
    rejects: Iterable[tuple[str, str]],
    *,
    base: str | os.PathLike | None = None,
    salt: str | bytes | None = None,
    records: Iterable[ImageRecord] = (),
    problems: Iterable[tuple[str, str]] = (),
    private_dir: str | os.PathLike | None = None,
) -> int:
    """Writes ``rejects.csv`` (no identifiers) and, optionally, the private map.

    ``out_dir/rejects.csv`` gets the columns :data:`REJECT_COLUMNS`, listing
    problems first (reason prefixed ``listing:``), then the rejects in sorted
    order, each redacted by :func:`redact_reject`. When ``private_dir`` is
    given, ``private_dir/rejects_private.csv`` gets the same rows plus
    ``source_path`` (the real path or listing location) and the unredacted
    reason: it re-identifies, so keep ``private_dir`` outside every artifact
    and pipeline root. Both files are written through ``tf.io.gfile`` when
    TensorFlow is loaded (URIs such as ``gs://`` work), else with ``open``.

    Args:
        out_dir: the folder of ``rejects.csv`` (an artifact folder is fine).
        rejects: ``(path, reason)`` pairs, as ``IngestExamples`` yields them.
        base: the data set root.
        salt: the salt of the keys (the one the ingest used).
        records: the listed records (for the image keys of rejected images).
        problems: the listing's ``(location, reason)`` problems.
        private_dir: where the re-identification file goes (``None``: not
            written).

    Returns:
        The number of rows written to ``rejects.csv``.

    Raises:
        ValueError: if ``private_dir`` lies inside ``out_dir``.
    """
    key = resolve_salt(salt)
    out_dir = os.fspath(out_dir)
    private = None
    if private_dir is not None:
        private = _check_private_dir(os.fspath(private_dir), out_dir)
    keys = image_keys_of(records, key)
    rows = [(where, f"listing: {reason}") for where, reason in problems]
    rows += sorted((str(p), str(r)) for p, r in rejects)
    public = io.StringIO()
    writer = csv.writer(public)
    writer.writerow(REJECT_COLUMNS)
    hidden = io.StringIO()
    private_writer = csv.writer(hidden)
    private_writer.writerow(PRIVATE_REJECT_COLUMNS)
    for where, reason in rows:
        ikey, shown, clean = redact_reject(
            where, reason, base=base, salt=key, image_keys=keys
        )
        writer.writerow([ikey, shown, clean])
        private_writer.writerow([ikey, shown, where, reason])
    _write_text(os.path.join(out_dir, REJECTS_FILE), public.getvalue())
    if private is not None:
        os.makedirs(private, exist_ok=True)
        _write_text(os.path.join(private, PRIVATE_REJECTS_FILE), hidden.getvalue())
    return len(rows)


def _write_text(path: str, text: str) -> None:
    if "tensorflow" in sys.modules and "://" in path:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(text)


def _relative(path: str, root: str) -> str:
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _clear_outputs(out_dir: str) -> None:
    for split in SPLITS:
        folder = os.path.join(out_dir, f"Split-{split}")
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith("data-") and name.endswith(".gz"):
                    os.remove(os.path.join(folder, name))
    for name in ("rejects.csv", "summary.json"):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))


def _read_lines(prefix: str) -> list[Any]:
    folder, base = os.path.split(prefix)
    items = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(base):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                items.extend(json.loads(line) for line in f if line.strip())
    return items


def _salt_source(salt) -> str:
    if salt:
        return "argument"
    return "environment" if os.environ.get(SALT_ENV) else "development default"


def run_ingest(
    source: str,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: int = 896,
    num_workers: int = 1,
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
        size: output side in pixels.
        num_workers: Beam worker processes (1 runs in process).
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
            itself holds no identifier (see the module docstring).

    Returns:
        The summary written to ``summary.json``: ``records``, ``ingested``,
        ``rejected``, ``listing_problems``, ``per_split``, ``per_label``,
        ``per_split_label``, ``seconds``, ``images_per_second`` and the
        settings. ``ingested + rejected == records`` always.

    Raises:
        ValueError: for invalid arguments (``private_dir`` inside ``out_dir``
            included) or an unusable data set root.
    """
    from morphhr_tf.data.adapters import load_source

    check_fractions(eval_fraction, test_fraction)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if private_dir is not None:
        private_dir = _check_private_dir(os.fspath(private_dir), out_dir)
    root = os.path.abspath(os.fspath(root))
    listing = load_source(source, root, **(source_kwargs or {}))
    base = os.path.dirname(root) if os.path.isfile(root) else root
    os.makedirs(out_dir, exist_ok=True)
    _clear_outputs(out_dir)
    work = os.path.join(out_dir, ".ingest_tmp")
    shutil.rmtree(work, ignore_errors=True)
    progress_dir = os.path.join(work, "progress")
    os.makedirs(progress_dir)
    start = time.perf_counter()

    options = PipelineOptions(runtime.beam_pipeline_args(num_workers))
    pipeline = beam.Pipeline(options=options)
    result = (
        pipeline
        | "Records" >> beam.Create(listing.records)
        | "Ingest"
        >> IngestExamples(
            size,
            salt,
            eval_fraction,
            resize_mode,
            test_fraction=test_fraction,
            modalities=modalities,
            max_pixels=max_pixels,
            progress_dir=progress_dir,
        )
    )
    for split in SPLITS:
        (
            result[EXAMPLES]
            | f"Only{split}" >> beam.Filter(lambda kv, s=split: kv[0] == s)
            | f"Bytes{split}" >> beam.Map(lambda kv: kv[1])
            | f"Write{split}"
            >> beam.io.WriteToTFRecord(
                os.path.join(out_dir, f"Split-{split}", "data"),
                file_name_suffix=".gz",
                compression_type=CompressionTypes.GZIP,
            )
        )
    (
        result[REJECTS]
        | "RejectJson" >> beam.Map(json.dumps)
        | "WriteRejects" >> beam.io.WriteToText(os.path.join(work, "rejects"))
    )
    (
        result[STATS]
        | "CountStats" >> beam.combiners.Count.PerElement()
        | "StatsJson" >> beam.Map(lambda kv: json.dumps([kv[0][0], kv[0][1], kv[1]]))
        | "WriteStats" >> beam.io.WriteToText(os.path.join(work, "stats"))
    )
    _run_with_progress(pipeline, progress_dir, len(listing.records), progress)

    rejects = [tuple(r) for r in _read_lines(os.path.join(work, "rejects"))]
    stats = _read_lines(os.path.join(work, "stats"))
    shutil.rmtree(work, ignore_errors=True)
    for split in SPLITS:
        folder = os.path.join(out_dir, f"Split-{split}")
        os.makedirs(folder, exist_ok=True)
        if not any(n.startswith("data-") for n in os.listdir(folder)):
            with gzip.open(os.path.join(folder, "data-00000-of-00001.gz"), "wb"):
                pass  # an empty split is an empty TFRecord file

    per_split = dict.fromkeys(SPLITS, 0)
    per_label = {"0": 0, "1": 0}
    per_split_label = {s: {"0": 0, "1": 0} for s in SPLITS}
    for split, label, count in stats:
        per_split[split] += count
        per_label[str(label)] += count
        per_split_label[split][str(label)] += count
    ingested = sum(per_split.values())
    if ingested + len(rejects) != len(listing.records):
        raise RuntimeError(
            f"ingest lost records: {ingested} ingested + {len(rejects)} rejected "
            f"!= {len(listing.records)} listed"
        )
    write_rejects(
        out_dir,
        rejects,
        base=base,
        salt=salt,
        records=listing.records,
        problems=listing.problems,
        private_dir=private_dir,
    )
    seconds = time.perf_counter() - start
    summary = {
        "source": source,
        "records": len(listing.records),
        "ingested": ingested,
        "rejected": len(rejects),
        "listing_problems": len(listing.problems),
        "per_split": per_split,
        "per_label": per_label,
        "per_split_label": per_split_label,
        "size": size,
        "resize_mode": resize_mode,
        "eval_fraction": eval_fraction,
        "test_fraction": test_fraction,
        "num_workers": num_workers,
        "salt": _salt_source(salt),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(listing.records) / max(seconds, 1e-9), 3),
    }
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


def _run_with_progress(pipeline, progress_dir: str, total: int, show: bool) -> None:
    errors: list[BaseException] = []

    def target():
        try:
            pipeline.run().wait_until_finish()
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)

    thread = threading.Thread(target=target, name="morphhr-ingest", daemon=True)
    thread.start()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="ingest", unit="img", file=sys.stderr)
    while thread.is_alive():
        thread.join(timeout=0.5)
        if bar is not None:
            done = 0
            try:
                for name in os.listdir(progress_dir):
                    done += os.path.getsize(os.path.join(progress_dir, name))
            except OSError:
                pass
            bar.update(min(done, total) - bar.n)
    if bar is not None:
        bar.close()
    if errors:
        raise errors[0]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the summary as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m morphhr_tf.data.ingest",
        description=(
            "Ingest a mammography data set into gzip TFRecords per split. "
            f"The patient-key salt is read from ${SALT_ENV}."
        ),
    )
    parser.add_argument(
        "--source", required=True, choices=("cbis_ddsm", "csv", "rsna", "vindr")
    )
    parser.add_argument(
        "--root", required=True, help="data set folder (manifest for csv)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=896)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.0)
    parser.add_argument("--resize-mode", choices=("square", "pad"), default="square")
    parser.add_argument(
        "--modality",
        action="append",
        help="accepted DICOM Modality (repeatable; default MG; 'any' accepts all)",
    )
    parser.add_argument(
        "--images-dir", help="csv source: folder scanned for unlisted files"
    )
    parser.add_argument(
        "--private-dir",
        help=(
            "folder OUTSIDE --out for rejects_private.csv, the map from the "
            "redacted rejects back to real file paths (default: not written)"
        ),
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    modalities: tuple[str, ...] | None = DEFAULT_MODALITIES
    if args.modality:
        modalities = None if "any" in args.modality else tuple(args.modality)
    source_kwargs = {"images_dir": args.images_dir} if args.images_dir else None
    summary = run_ingest(
        args.source,
        args.root,
        args.out,
        size=args.size,
        num_workers=args.workers,
        eval_fraction=args.eval_fraction,
        test_fraction=args.test_fraction,
        resize_mode=args.resize_mode,
        modalities=modalities,
        progress=not args.no_progress,
        source_kwargs=source_kwargs,
        private_dir=args.private_dir,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
