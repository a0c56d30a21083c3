"""The Beam side of the ingest: records -> tf.Examples by split, rejects, counts.

- :class:`IngestExamples` reads, preprocesses and encodes image records
  (tagged outputs ``examples``, ``rejects`` and ``stats``; the per-record
  step, by file type and data set, is
  :class:`morphhr_tf.data.ingest_encode.EncodeFn`);
- :class:`IngestSplits`, the composite both :func:`morphhr_tf.data.ingest.run_ingest`
  and the DicomExampleGen executor run, adds the listing problems, routes
  the examples to their split, redacts the rejects
  (:mod:`morphhr_tf.data.redaction`) and counts; its :meth:`IngestSplits.summarize`
  makes the one ``summary.json`` schema of both and checks that no record was
  lost. For a multi-label data set (ChestX-ray14) the summary also holds the
  label names and the positives of each label per split.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from morphhr_tf.data.adapters import label_names
from morphhr_tf.data.deid import SALT_ENV, patient_key, resolve_salt
from morphhr_tf.data.dicom_reader import DEFAULT_MAX_PIXELS, DEFAULT_MODALITIES
from morphhr_tf.data.ingest_encode import EXAMPLES, REJECTS, STATS, EncodeFn
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE
from morphhr_tf.data.records import ImageRecord
from morphhr_tf.data.redaction import image_keys_of, reject_rows, write_text
from morphhr_tf.data.splits import (
    SPLITS,
    assign_split,
    check_fractions,
    combine_official,
)

COUNTS = "counts"
SUMMARY_FILE = "summary.json"
_COUNTS_FILE = "counts"


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
    - ``stats``: ``(split, label, labels)`` for each ingested record
      (``labels``: the multi-hot labels, ``()`` for a binary record).

    Every input lands in exactly one of ``examples`` and ``rejects``.

    Args:
        image_size: the stored image size, the output side in pixels.
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
        image_size: int = DEFAULT_IMAGE_SIZE,
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

        Resize(image_size, resize_mode)  # validates both
        check_fractions(eval_fraction, test_fraction)
        self.image_size = image_size
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
                EncodeFn(
                    self.image_size,
                    self.resize_mode,
                    salt,
                    self.modalities,
                    self.max_pixels,
                    self.progress_dir,
                )
            ).with_outputs(REJECTS, STATS, main=EXAMPLES)
        )


class IngestSplits(beam.PTransform):
    """The whole ingest of one listing: pipeline -> a dict of outputs.

    Applied to a pipeline (``pipeline | IngestSplits(records, problems, ...)``);
    the result holds:

    - ``examples``: ``{split: PCollection[bytes]}``, serialized tf.Examples for
      each of ``split_names`` (a split outside them goes to the first);
    - ``rejects``: ``(order, public row, private row)`` for every listing
      problem (reason prefixed ``listing:``) and rejected image; the public
      row is the redacted ``rejects.csv`` row (:data:`REJECT_COLUMNS`), the
      private one the ``rejects_private.csv`` row with the real path; sorting
      by ``order`` puts the listing problems first, in listing order, then
      the images by path and reason;
    - ``counts``: one JSON line, the input of :meth:`summarize` (write it with
      :func:`save_counts`, read it back with :func:`load_counts`).

    The label names of a multi-label listing (:attr:`label_names`) come from
    its records' data set (:func:`morphhr_tf.data.adapters.label_names`).

    Args:
        records: the listed records.
        problems: the listing's ``(location, reason)`` problems.
        ingest: the :class:`IngestExamples` to run (image size, salt, fractions,
            ...; default: its defaults); its salt also keys the rejects.
        split_names: the splits written.
        base: the data set root (reject paths are shown relative to it).

    Raises:
        ValueError: if the records mix multi-label data sets with different
            label names.
    """

    def __init__(
        self,
        records: Iterable[ImageRecord],
        problems: Iterable[tuple[str, str]] = (),
        ingest: IngestExamples | None = None,
        *,
        split_names: Iterable[str] = SPLITS,
        base: str | os.PathLike | None = None,
        label: str | None = None,
    ):
        super().__init__(label)
        self.records = list(records)
        self.problems = [(w, f"listing: {r}") for w, r in problems]
        self.ingest = IngestExamples() if ingest is None else ingest
        self.split_names = tuple(split_names)
        self.base = None if base is None else os.fspath(base)
        self.label_names = _label_names_of(self.records)

    def expand(self, pbegin):
        names, base = self.split_names, self.base
        salt = resolve_salt(self.ingest.salt)
        keys = image_keys_of(self.records, salt)
        ingested = (
            pbegin
            | "Records" >> beam.Create(self.records, reshuffle=False)
            | "Ingest" >> self.ingest
        )
        by_split = ingested[EXAMPLES] | "BySplit" >> beam.Partition(
            lambda kv, n: names.index(_route(kv[0], names)), len(names)
        )
        examples = {
            name: pcoll | f"Values[{name}]" >> beam.Values()
            for name, pcoll in zip(names, by_split)
        }
        listed = pbegin | "ListingProblems" >> beam.Create(
            [((0, i), w, r) for i, (w, r) in enumerate(self.problems)], reshuffle=False
        )
        images = ingested[REJECTS] | "OrderImages" >> beam.MapTuple(
            lambda path, reason: ((1, path, reason), path, reason)
        )
        rejects = (
            (listed, images)
            | "AllRejects" >> beam.Flatten()
            | "Redact"
            >> beam.MapTuple(
                lambda order, where, reason: (
                    order,
                    *reject_rows(where, reason, base=base, salt=salt, image_keys=keys),
                )
            )
        )
        tallies = (
            ingested[STATS]
            | "ExampleKinds" >> beam.FlatMap(_kinds, names, self.label_names),
            images | "RejectKinds" >> beam.Map(lambda _: ("rejected",)),
        )
        counts = (
            tallies
            | "AllKinds" >> beam.Flatten()
            | "Tally" >> beam.combiners.Count.PerElement()
            | "Gather" >> beam.combiners.ToList()
            | "Counts" >> beam.Map(_counts_json, self.label_names)
        )
        return {EXAMPLES: examples, REJECTS: rejects, COUNTS: counts}

    def summarize(
        self,
        counts: Mapping[str, Any],
        *,
        source: str,
        num_workers: int,
        worker_mode: str,
        start: float,
    ) -> dict[str, Any]:
        """The ``summary.json`` of a finished run of this transform.

        Args:
            counts: the ``counts`` output, as :func:`load_counts` reads it.
            source: the adapter name.
            num_workers: the local Beam workers.
            worker_mode: how the workers ran: ``"processes"``,
                ``"threads"`` or ``"in_process"``, as
                :func:`morphhr_tf.runtime.beam_workers_of` reads the run's
                Beam options.
            start: ``time.perf_counter()`` when the run began.

        Returns:
            ``source``, ``records`` (= ``listed``), ``ingested``,
            ``rejected`` (the rows of ``rejects.csv``: ``rejected_images +
            listing_problems``), ``rejected_images``, ``listing_problems``,
            ``per_split``, ``per_label``, ``per_split_label``; for a
            multi-label data set only, ``label_names`` (the order of the
            examples' ``labels``), ``per_finding`` and ``per_split_finding``
            (``{split: {name: positive examples}}``); the settings
            (``image_size``, ``resize_mode``, ``eval_fraction``, ``test_fraction``,
            ``num_workers``, ``worker_mode``, ``salt``: where the salt came
            from, never its value), ``seconds`` and ``images_per_second``.

        Raises:
            RuntimeError: if ``ingested + rejected_images != records``.
        """
        per_split_label = {s: dict(counts["per_split_label"][s]) for s in SPLITS}
        per_split = {s: sum(v.values()) for s, v in per_split_label.items()}
        per_label = {k: sum(v[k] for v in per_split_label.values()) for k in ("0", "1")}
        ingested, rejected = sum(per_split.values()), int(counts["rejected_images"])
        records, problems = len(self.records), len(self.problems)
        if ingested + rejected != records:
            raise RuntimeError(
                f"ingest lost records: {ingested} ingested + {rejected} rejected "
                f"!= {records} listed"
            )
        seconds = time.perf_counter() - start
        return {
            "source": source,
            "records": records,
            "listed": records,
            "ingested": ingested,
            "rejected": rejected + problems,
            "rejected_images": rejected,
            "listing_problems": problems,
            "per_split": per_split,
            "per_label": per_label,
            "per_split_label": per_split_label,
            **self._finding_counts(counts),
            "image_size": self.ingest.image_size,
            "resize_mode": self.ingest.resize_mode,
            "eval_fraction": self.ingest.eval_fraction,
            "test_fraction": self.ingest.test_fraction,
            "num_workers": num_workers,
            "worker_mode": worker_mode,
            "salt": _salt_source(self.ingest.salt),
            "seconds": round(seconds, 3),
            "images_per_second": round(records / max(seconds, 1e-9), 3),
        }

    def _finding_counts(self, counts: Mapping[str, Any]) -> dict[str, Any]:
        """The summary's per-label counts; ``{}`` for a binary data set."""
        if not self.label_names:
            return {}
        per_split = {
            s: {n: int(counts["per_split_finding"][s][n]) for n in self.label_names}
            for s in SPLITS
        }
        return {
            "label_names": list(self.label_names),
            "per_finding": {
                n: sum(v[n] for v in per_split.values()) for n in self.label_names
            },
            "per_split_finding": per_split,
        }


def _label_names_of(records: list[ImageRecord]) -> tuple[str, ...]:
    """The label names of the records' multi-label data set (``()``: binary;
    a record whose data set names no labels is rejected when encoded)."""
    found = {label_names(r.dataset) for r in records if r.labels} - {()}
    if len(found) > 1:
        raise ValueError(
            "the records mix multi-label data sets with different label names: "
            f"{sorted({r.dataset for r in records if r.labels})}"
        )
    return found.pop() if found else ()


def _route(split: str, names: tuple[str, ...]) -> str:
    return split if split in names else names[0]


def _kinds(stats: tuple, names: tuple[str, ...], finding_names: tuple[str, ...]):
    """The tallies of one ``stats`` element: its label and its positive labels."""
    split, label, labels = stats
    split = _route(split, names)
    yield "example", split, label
    for name, value in zip(finding_names, labels):
        if value:
            yield "finding", split, name


def _counts_json(tallies: list[tuple[tuple, int]], finding_names=()) -> str:
    per_split_label = {s: {"0": 0, "1": 0} for s in SPLITS}
    per_split_finding = {s: dict.fromkeys(finding_names, 0) for s in SPLITS}
    rejected = 0
    for kind, count in tallies:
        if kind[0] == "example":
            per_split_label[kind[1]][str(kind[2])] += count
        elif kind[0] == "finding":
            per_split_finding[kind[1]][kind[2]] += count
        else:
            rejected += count
    counts = {"per_split_label": per_split_label, "rejected_images": rejected}
    if finding_names:
        counts["per_split_finding"] = per_split_finding
    return json.dumps(counts)


def _salt_source(salt) -> str:
    if salt:
        return "argument"
    return "environment" if os.environ.get(SALT_ENV) else "development default"


def save_counts(outputs: Mapping[str, Any], folder: str) -> None:
    """Writes :class:`IngestSplits`' ``counts`` to ``folder`` when the
    pipeline runs (local path or URI)."""
    outputs[COUNTS] | "WriteCounts" >> beam.io.WriteToText(
        os.path.join(folder, _COUNTS_FILE), shard_name_template=""
    )


def load_counts(folder: str) -> dict[str, Any]:
    """The counts :func:`save_counts` wrote, after the run."""
    return read_json_lines(os.path.join(folder, _COUNTS_FILE))[0]


def read_json_lines(path: str) -> list[Any]:
    """The JSON values, one a line, of a file ``WriteToText`` wrote with
    ``shard_name_template=""`` (local path or URI)."""
    with FileSystems.open(path) as f:
        text = f.read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_summary(folder: str, summary: Mapping[str, Any]) -> None:
    """Writes ``summary.json`` (local path or, with TensorFlow, URI)."""
    write_text(os.path.join(folder, SUMMARY_FILE), json.dumps(summary, indent=2))
