"""Batch prediction on DICOM (or PNG) files with an exported MorphHR SavedModel.

    python -m morphhr_tf.serving.predict --model SAVED_MODEL_DIR \\
        --input FILE_OR_DIR --out predictions.csv

``--model`` is a SavedModel directory or a TF Serving base directory (the
newest numeric version is used). DICOM files (``.dcm``, ``.dicom``) go
through the ingestion preprocessing (:mod:`morphhr_tf.serving.preprocess`);
PNG files (``.png``: already preprocessed images, 8- or 16-bit gray, any
size) are sent as they are. Both go to the ``predict_png`` signature, whose
input contract (``docs/deploy.md``) applies.

The CSV has one row per file: ``path,probability,status,reason``; a file that
cannot be scored (unreadable, not a mammogram, refused by the signature) has
an empty probability, ``status=rejected`` and the reason, and never stops the
others. Exit status: 0 when at least one file was scored, 1 (with a message
on stderr) when files were found but none could be scored, 2 for a usage
error (no model, no input files). The CSV names your files by their paths:
it is a local report, not an artifact to share. A progress bar (files read
and scored) goes to stderr; ``--no-progress`` turns it off.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence

import morphhr_tf  # noqa: F401  (runtime policy first)

DICOM_SUFFIXES = (".dcm", ".dicom")
PNG_SUFFIXES = (".png",)
FIELDS = ("path", "probability", "status", "reason")


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


def predict_files(
    model_dir: str,
    files: Sequence[str],
    *,
    batch_size: int = 8,
    resize_mode: str = "square",
    modalities: Sequence[str] | None = ("MG",),
    progress: bool = False,
) -> list[dict[str, str]]:
    """Predicts every file; returns one row dict per file, in order.

    A file that cannot be read, or that the signature refuses, gets
    ``status="rejected"`` and the reason; the others are still scored (a
    refused batch is retried file by file). A probability that is not a
    finite number in [0, 1] is never reported as a score.

    Args:
        model_dir: SavedModel (or TF Serving base) directory.
        files: DICOM or PNG paths.
        batch_size: images per signature call.
        resize_mode: ``square`` or ``pad``, as at ingestion (DICOM files).
        modalities: accepted DICOM Modality values (``None``: any).
        progress: show a progress bar (files read and scored) on stderr.

    Returns:
        ``[{"path", "probability", "status", "reason"}]``.

    Raises:
        ValueError: if ``model_dir`` holds no SavedModel, or ``batch_size``
            is not positive.
    """
    import math

    import tensorflow as tf

    from morphhr_tf.data.dicom_reader import DicomRejected
    from morphhr_tf.data.features import PROBABILITY
    from morphhr_tf.serving import preprocess
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
    resolution = int(loaded.resolution.numpy())
    predict = loaded.signatures[PREDICT_PNG]
    rows = [{"path": f, "probability": "", "status": "", "reason": ""} for f in files]
    pending: list[tuple[int, bytes]] = []

    def score(batch: list[tuple[int, bytes]]) -> None:
        pngs = tf.constant([png for _, png in batch])
        probs = predict(**{PNG_INPUT: pngs})[PROBABILITY].numpy().ravel()
        for (i, _), p in zip(batch, probs):
            if math.isfinite(float(p)) and 0.0 <= float(p) <= 1.0:
                rows[i].update(probability=f"{float(p):.6f}", status="ok")
            else:
                rows[i].update(status="rejected", reason=f"model returned {p!r}")

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
            if path.lower().endswith(PNG_SUFFIXES):
                with open(path, "rb") as f:
                    png = f.read()
            else:
                pixels = preprocess.preprocess_dicom(
                    path,
                    image_size=resolution,
                    resize_mode=resize_mode,
                    modalities=modalities,
                )
                png = preprocess.png_bytes(pixels)
        except DicomRejected as err:
            rows[i].update(status="rejected", reason=str(err))
            continue
        except Exception as err:  # report, never stop the batch
            rows[i].update(status="rejected", reason=f"{type(err).__name__}: {err}")
            continue
        pending.append((i, png))
        if len(pending) >= batch_size:
            flush()
    flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel or serving dir")
    parser.add_argument("--input", required=True, help="DICOM/PNG file or folder")
    parser.add_argument("--out", default="predictions.csv")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resize-mode", default="square", choices=("square", "pad"))
    parser.add_argument("--modalities", default="MG", help="comma-separated, or 'any'")
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
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    rejected = [r for r in rows if r["status"] == "rejected"]
    print(
        f"{len(rows) - len(rejected)} predicted, {len(rejected)} rejected -> {args.out}"
    )
    for r in rejected:
        print(f"  rejected {r['path']}: {r['reason']}")
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
