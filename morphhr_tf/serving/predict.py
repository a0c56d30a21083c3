"""Batch prediction on DICOM files with an exported MorphHR SavedModel.

    python -m morphhr_tf.serving.predict --model SAVED_MODEL_DIR \\
        --input DICOM_FILE_OR_DIR --out predictions.csv

``--model`` is a SavedModel directory or a TF Serving base directory (the
newest numeric version is used). Files go through the ingestion preprocessing
(:mod:`morphhr_tf.serving.preprocess`) and the ``predict_png`` signature.
The CSV has one row per file: ``path,probability,status,reason``; rejected
files have an empty probability, ``status=rejected`` and the reason.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence

import morphhr_tf  # noqa: F401  (runtime policy first)

DICOM_SUFFIXES = (".dcm", ".dicom")


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
    """``path`` itself if it is a file, else every DICOM file under it, sorted."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ValueError(f"--input does not exist. Received: {path!r}")
    found = []
    for dirpath, _, names in os.walk(path):
        found += [
            os.path.join(dirpath, n)
            for n in names
            if n.lower().endswith(DICOM_SUFFIXES)
        ]
    return sorted(found)


def predict_files(
    model_dir: str,
    files: Sequence[str],
    *,
    batch_size: int = 8,
    resize_mode: str = "square",
    modalities: Sequence[str] | None = ("MG",),
) -> list[dict[str, str]]:
    """Predicts every file; returns one row dict per file, in order.

    Args:
        model_dir: SavedModel (or TF Serving base) directory.
        files: DICOM paths.
        batch_size: images per signature call.
        resize_mode: ``square`` or ``pad``, as at ingestion.
        modalities: accepted DICOM Modality values (``None``: any).

    Returns:
        ``[{"path", "probability", "status", "reason"}]``.
    """
    import tensorflow as tf

    from morphhr_tf.data.dicom_reader import DicomRejected
    from morphhr_tf.data.features import PROBABILITY
    from morphhr_tf.serving import preprocess
    from morphhr_tf.serving.signatures import PNG_INPUT, PREDICT_PNG

    loaded = tf.saved_model.load(resolve_saved_model(model_dir))
    size = int(loaded.input_size.numpy()) if hasattr(loaded, "input_size") else 896
    predict = loaded.signatures[PREDICT_PNG]
    rows = [{"path": f, "probability": "", "status": "", "reason": ""} for f in files]
    pending: list[tuple[int, bytes]] = []

    def flush():
        if not pending:
            return
        pngs = tf.constant([png for _, png in pending])
        probs = predict(**{PNG_INPUT: pngs})[PROBABILITY].numpy().ravel()
        for (i, _), p in zip(pending, probs):
            rows[i].update(probability=f"{float(p):.6f}", status="ok")
        pending.clear()

    for i, path in enumerate(files):
        try:
            pixels = preprocess.preprocess_dicom(
                path, size=size, resize_mode=resize_mode, modalities=modalities
            )
        except DicomRejected as err:
            rows[i].update(status="rejected", reason=str(err))
            continue
        except Exception as err:  # report, never stop the batch
            rows[i].update(status="rejected", reason=f"{type(err).__name__}: {err}")
            continue
        pending.append((i, preprocess.png_bytes(pixels)))
        if len(pending) >= batch_size:
            flush()
    flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel or serving dir")
    parser.add_argument("--input", required=True, help="DICOM file or folder")
    parser.add_argument("--out", default="predictions.csv")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resize-mode", default="square", choices=("square", "pad"))
    parser.add_argument("--modalities", default="MG", help="comma-separated, or 'any'")
    args = parser.parse_args(argv)
    modalities = None if args.modalities == "any" else tuple(args.modalities.split(","))
    files = find_dicom_files(args.input)
    rows = predict_files(
        args.model,
        files,
        batch_size=args.batch_size,
        resize_mode=args.resize_mode,
        modalities=modalities,
    )
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["path", "probability", "status", "reason"]
        )
        writer.writeheader()
        writer.writerows(rows)
    rejected = [r for r in rows if r["status"] == "rejected"]
    print(
        f"{len(rows) - len(rejected)} predicted, {len(rejected)} rejected -> {args.out}"
    )
    for r in rejected:
        print(f"  rejected {r['path']}: {r['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
