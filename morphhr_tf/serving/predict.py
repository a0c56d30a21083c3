"""Batch prediction on DICOM (or PNG) files with an exported MorphHR SavedModel.

    python -m morphhr_tf.serving.predict --model SAVED_MODEL_DIR \\
        --input FILE_OR_DIR --out predictions.csv [--no-levels] [--exam-by patient]

``--model`` is a SavedModel directory or a TF Serving base directory (the
newest numeric version is used). DICOM files (``.dcm``, ``.dicom``) go
through the ingestion preprocessing (:mod:`morphhr_tf.serving.preprocess`);
PNG files (``.png``: already preprocessed images, 8- or 16-bit gray, any
size) are sent as they are. Both go to the ``predict_png`` signature, whose
input contract (``docs/deploy.md``) applies.

The CSV has one row per file: ``path,probability,status,reason,patient_key,
study_key,laterality,view``; a file that cannot be scored (unreadable, not a
mammogram, refused by the signature) has an empty probability,
``status=rejected`` and the reason, and never stops the others.
``patient_key`` and ``study_key`` are salted hashes of the DICOM's PatientID
(:func:`morphhr_tf.data.deid.patient_key`) and StudyInstanceUID
(``HMAC(salt, "study:" + UID)``) under ``$MORPHHR_SALT`` (else the public
development salt, with a warning); ``laterality`` (``L``/``R``) and ``view``
come from the header. All four are empty for PNG files and absent tags. No
raw identifier is written. The patient key hashes the DICOM PatientID, so it
matches the ingest's ``patient_key`` only where the data set's patient id is
the PatientID (CBIS-DDSM's ``P_00001`` is not).

A multi-label SavedModel (one carrying ``label_names``: ChestX-ray14's
findings) writes one probability column per label, named by the label
(``path,Atelectasis,...,Hernia,status,reason,...``), from the signature's
``probabilities`` output; its PNG files are read by the ingest's defensive
reader (:func:`morphhr_tf.data.png_reader.read_radiograph`) and, like its
DICOM files (pass ``--modalities CR,DX`` or ``any``), only resized to the
model's resolution, as ingestion does for chest radiographs (no breast crop,
no flip). The breast and exam files make no sense for it: ``--levels`` is
then skipped with one line on stdout.

With ``--levels`` (the default) two more CSVs are written next to ``--out``
(``predictions.csv`` -> ``predictions_breast.csv``, ``predictions_exam.csv``):
one row per breast (an exam's images of one laterality: ``n_images``,
``views``, mean and max probability) and one row per exam (``n_images``,
``n_breasts``, mean and max over its images, and the max over its breasts of
the breast means, the recommended exam score). An exam is one patient's
study; an image whose study is unknown belongs to its patient's exam.
``--exam-by patient`` groups all of a patient's images into one exam: use it
when each image is its own study (CBIS-DDSM's TCIA release does that). The
definitions are in :mod:`morphhr_tf.evaluation.aggregate`. Rejected images,
and images without a patient key or laterality, are left out of both files
(their ``n_images`` count only the images used) and counted on stdout.

Exit status: 0 when at least one file was scored, 1 (with a message on
stderr) when files were found but none could be scored, 2 for a usage error
(no model, no input files). The image CSV names your files by their paths:
it is a local report, not an artifact to share. A progress bar (files read
and scored) goes to stderr; ``--no-progress`` turns it off.

``--heatmaps DIR`` also writes a saliency overlay PNG and the raw map
(``.npy``) per scored image, named by the row's index
(:mod:`morphhr_tf.serving.heatmaps`); ``--heatmap-label`` picks the finding
a multi-label model's maps explain.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import morphhr_tf  # noqa: F401  (runtime policy first)
from morphhr_tf.serving.level_files import (  # noqa: F401  (re-exported)
    _write_csv,
    level_paths,
    write_levels,
)

DICOM_SUFFIXES = (".dcm", ".dicom")
PNG_SUFFIXES = (".png",)
HEADER_FIELDS = ("patient_key", "study_key", "laterality", "view")
FIELDS = ("path", "probability", "status", "reason") + HEADER_FIELDS


def error_reason(err: BaseException) -> str:
    """A one-line reason from a TensorFlow error (its message, no node lists)."""
    text = getattr(err, "message", None) or str(err)
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[{{")
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(skip)
    ]
    reason = " ".join(" ".join(lines).split())
    reason = reason.split(" [[{{node")[0].split(" [Op:")[0]
    return f"{type(err).__name__}: {reason}"[:400]


def resolve_saved_model(path: str) -> str:
    """A SavedModel dir itself, or the newest numeric version under it.

    Raises:
        ValueError: if neither holds a ``saved_model.pb``.
    """
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = (
        [d for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
    )
    for version in sorted(versions, key=int, reverse=True):
        candidate = os.path.join(path, version)
        if os.path.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise ValueError(
        f"No SavedModel (saved_model.pb) in {path!r} or its numeric version folders."
    )


def find_dicom_files(path: str) -> list[str]:
    """``path`` itself if it is a file, else every DICOM or PNG file under it,
    sorted.

    Raises:
        ValueError: if ``path`` does not exist.
    """
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ValueError(f"--input does not exist. Received: {path!r}")
    found = []
    for dirpath, _, names in os.walk(path):
        found += [
            os.path.join(dirpath, n)
            for n in names
            if n.lower().endswith(DICOM_SUFFIXES + PNG_SUFFIXES)
        ]
    return sorted(found)


def csv_fields(label_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The image CSV's columns: :data:`FIELDS`, or for a multi-label model one
    probability column per label name in place of ``probability``.

    Raises:
        ValueError: if a label name is also one of the other columns.
    """
    if label_names is None:
        return FIELDS
    clash = sorted(set(label_names) & set(FIELDS))
    if clash:
        raise ValueError(
            f"label names {clash} clash with the CSV columns {FIELDS}. Received: "
            f"label_names={list(label_names)}"
        )
    return ("path", *label_names, "status", "reason") + HEADER_FIELDS


def _load(
    path: str,
    preprocessing: dict,
    modalities: Sequence[str] | None,
    salt: bytes,
    radiograph: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """The PNG to score and the header fields (salted keys, laterality, view).

    A mammogram model's PNG files are sent as they are; a multi-label
    (``radiograph``) model's files are read and resized as ingestion does.
    """
    from morphhr_tf.serving import preprocess

    if radiograph:
        pixels, meta = preprocess.read_and_preprocess_radiograph(
            path, modalities=modalities, salt=salt, **preprocessing
        )
        header = {k: str(meta.get(k, "") or "") for k in HEADER_FIELDS}
        return preprocess.png_bytes(pixels), header
    if path.lower().endswith(PNG_SUFFIXES):
        with open(path, "rb") as f:
            return f.read(), dict.fromkeys(HEADER_FIELDS, "")
    pixels, meta = preprocess.read_and_preprocess(
        path, modalities=modalities, salt=salt, **preprocessing
    )
    return preprocess.png_bytes(pixels), {k: meta.get(k, "") for k in HEADER_FIELDS}


def predict_files(
    model_dir: str,
    files: Sequence[str],
    *,
    batch_size: int = 8,
    resize_mode: str = "square",
    modalities: Sequence[str] | None = ("MG",),
    progress: bool = False,
    salt: str | bytes | None = None,
    heatmaps: str | None = None,
    heatmap_label: str | None = None,
) -> list[dict[str, str]]:
    """Predicts every file; returns one row dict per file, in order.

    A file that cannot be read, or that the signature refuses, gets
    ``status="rejected"`` and the reason; the others are still scored (a
    refused batch is retried file by file). A probability that is not a
    finite number in [0, 1] is never reported as a score.

    A multi-label SavedModel (one with ``label_names``, e.g. ChestX-ray14)
    gets one probability column per label name instead of ``probability``
    (:func:`csv_fields`), and its files, PNG or DICOM, are read and resized
    as ingestion reads them (no breast crop or flip:
    :func:`morphhr_tf.serving.preprocess.read_and_preprocess_radiograph`).

    Args:
        model_dir: SavedModel (or TF Serving base) directory.
        files: DICOM or PNG paths.
        batch_size: images per signature call.
        resize_mode: ``square`` or ``pad``, as at ingestion (DICOM files).
        modalities: accepted DICOM Modality values (``None``: any).
        progress: show a progress bar (files read and scored) on stderr.
        salt: salt of the patient and study keys, resolved by
            :func:`morphhr_tf.data.deid.resolve_salt` (``None``:
            ``$MORPHHR_SALT``, else the public development salt).
        heatmaps: a folder for a saliency overlay and map per scored image
            (:mod:`morphhr_tf.serving.heatmaps`; rows gain ``heatmap`` and
            ``heatmap_label``); ``None``: none.
        heatmap_label: the label a multi-label model's maps explain
            (``None``: each image's most probable label).

    Returns:
        ``[{"path", "probability", "status", "reason", "patient_key",
        "study_key", "laterality", "view"}]`` (:data:`FIELDS`; the keys of
        :func:`csv_fields`, in order, for a multi-label model).

    Raises:
        ValueError: if ``model_dir`` holds no SavedModel, or ``batch_size``
            is not positive.
    """
    import math

    import tensorflow as tf

    from morphhr_tf.data import deid
    from morphhr_tf.data.dicom_reader import DicomRejected
    from morphhr_tf.data.features import PROBABILITIES, PROBABILITY
    from morphhr_tf.data.png_reader import PngRejected
    from morphhr_tf.serving.signatures import PNG_INPUT, PREDICT_PNG

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: {batch_size}")
    loaded = tf.saved_model.load(resolve_saved_model(model_dir))
    if not hasattr(loaded, "resolution"):
        raise ValueError(
            f"The SavedModel in {model_dir} has no `resolution` variable, so the "
            "size to preprocess DICOM files to is unknown. Export it with "
            "morphhr_tf.training.export.export_serving_model."
        )
    preprocessing = {
        "image_size": int(loaded.resolution.numpy()),
        "resize_mode": resize_mode,
    }
    key = deid.resolve_salt(salt)
    predict = loaded.signatures[PREDICT_PNG]
    names = label_names(loaded)
    columns = (PROBABILITY,) if names is None else names
    output = PROBABILITY if names is None else PROBABILITIES
    rows = [dict.fromkeys(csv_fields(names), "") | {"path": f} for f in files]
    writer = None
    if heatmaps:
        from morphhr_tf.serving.heatmaps import HEATMAP, HEATMAP_LABEL, HeatmapWriter

        writer = HeatmapWriter(loaded, heatmaps, names, heatmap_label)
        rows = [r | {HEATMAP: "", HEATMAP_LABEL: ""} for r in rows]
    pending: list[tuple[int, bytes]] = []

    def score(batch: list[tuple[int, bytes]]) -> None:
        pngs = tf.constant([png for _, png in batch])
        probs = predict(**{PNG_INPUT: pngs})[output].numpy()
        for (i, _), values in zip(batch, probs.reshape(len(batch), len(columns))):
            bad = [p for p in values if not (math.isfinite(p) and 0 <= p <= 1)]
            if bad:
                rows[i].update(status="rejected", reason=f"model returned {bad[0]!r}")
            else:
                scores = {c: f"{float(p):.6f}" for c, p in zip(columns, values)}
                rows[i].update(scores, status="ok")
        if writer is not None:
            ok = [k for k, (i, _) in enumerate(batch) if rows[i]["status"] == "ok"]
            written = writer.write(
                [batch[k][0] for k in ok],
                [batch[k][1] for k in ok],
                probs.reshape(len(batch), -1)[ok],
            )
            for i, fields in written.items():
                rows[i].update(fields)

    def flush() -> None:
        if not pending:
            return
        try:
            score(pending)
        except tf.errors.OpError:
            for item in pending:  # find the file(s) the signature refuses
                try:
                    score([item])
                except tf.errors.OpError as err:
                    rows[item[0]].update(status="rejected", reason=error_reason(err))
        pending.clear()

    from tqdm import tqdm

    bar = tqdm(
        files, desc="predict", unit="file", file=sys.stderr, disable=not progress
    )
    for i, path in enumerate(bar):
        try:
            png, header = _load(path, preprocessing, modalities, key, bool(names))
        except (DicomRejected, PngRejected) as err:
            rows[i].update(status="rejected", reason=str(err))
            continue
        except Exception as err:  # report, never stop the batch
            rows[i].update(status="rejected", reason=f"{type(err).__name__}: {err}")
            continue
        rows[i].update(header)
        pending.append((i, png))
        if len(pending) >= batch_size:
            flush()
    flush()
    return rows


def label_names(loaded) -> tuple[str, ...] | None:
    """The ``label_names`` a loaded multi-label SavedModel carries, else None."""
    if not hasattr(loaded, "label_names"):
        return None
    return tuple(n.decode("utf-8") for n in loaded.label_names.numpy().tolist())


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (see the module docstring)."""
    from morphhr_tf.evaluation.aggregate import EXAM_BY

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel or serving dir")
    parser.add_argument("--input", required=True, help="DICOM/PNG file or folder")
    parser.add_argument("--out", default="predictions.csv")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resize-mode", default="square", choices=("square", "pad"))
    parser.add_argument("--modalities", default="MG", help="comma-separated, or 'any'")
    parser.add_argument(
        "--levels",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write <out>_breast.csv and <out>_exam.csv (default: on)",
    )
    parser.add_argument(
        "--exam-by",
        default="study",
        choices=EXAM_BY,
        help="an exam is a patient's study (default) or all of a patient's images",
    )
    parser.add_argument(
        "--heatmaps",
        default=None,
        metavar="DIR",
        help="write a saliency overlay PNG and .npy map per image into DIR",
    )
    parser.add_argument(
        "--heatmap-label",
        default=None,
        help="multi-label models: the label the maps explain (default: the "
        "most probable one per image)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr"
    )
    args = parser.parse_args(argv)
    modalities = None if args.modalities == "any" else tuple(args.modalities.split(","))
    try:
        files = find_dicom_files(args.input)
        if not files:
            raise ValueError(f"no DICOM or PNG file under --input {args.input!r}")
        rows = predict_files(
            args.model,
            files,
            batch_size=args.batch_size,
            resize_mode=args.resize_mode,
            modalities=modalities,
            progress=not args.no_progress,
            heatmaps=args.heatmaps,
            heatmap_label=args.heatmap_label,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    fields = tuple(rows[0])  # csv_fields of the model's label names
    _write_csv(args.out, fields, rows)
    rejected = [r for r in rows if r["status"] == "rejected"]
    print(
        f"{len(rows) - len(rejected)} predicted, {len(rejected)} rejected -> {args.out}"
    )
    for r in rejected:
        print(f"  rejected {r['path']}: {r['reason']}")
    if args.levels and "probability" not in fields:
        print(
            "levels: skipped (multi-label model: the breast and exam files are "
            "for mammograms)"
        )
    elif args.levels:
        print(write_levels(rows, args.out, args.exam_by))
    if len(rejected) == len(rows):
        print(
            f"error: none of the {len(rows)} files could be scored; "
            f"the reasons are in {args.out}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
