"""Calibration of an exported model on held-out examples (a script, not a test).

Runs the SavedModel's ``serving_default`` signature (the TFMA/TF Serving
path) over gzip TFRecords (e.g. the ExampleGen's ``Split-test``, which the
calibration never saw) and prints, per output, the expected calibration
error (15 equal-width bins, :func:`morphhr_tf.evaluation.calibration.
expected_calibration_error`) and the AUC of the served (calibrated) and the
uncalibrated probabilities, with the mean label and mean prediction.

Usage::

    python benchmarks/calibration_check.py --model SERVING_DIR \\
        --examples '.../Split-test/*.gz' [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import morphhr_tf.runtime  # noqa: E402, F401  (runtime policy before TensorFlow)


def served_and_labels(model_dir: str, pattern: str, batch_size: int = 64):
    """``(names, labels [N, L], calibrated [N, L], uncalibrated [N, L])``."""
    import numpy as np
    import tensorflow as tf

    from morphhr_tf.data import features as F
    from morphhr_tf.serving.predict import label_names, resolve_saved_model
    from morphhr_tf.serving.signatures import (
        PROBABILITIES_UNCALIBRATED,
        PROBABILITY_UNCALIBRATED,
    )

    loaded = tf.saved_model.load(resolve_saved_model(model_dir))
    names = label_names(loaded)
    out_key = F.PROBABILITY if names is None else F.PROBABILITIES
    raw_key = PROBABILITY_UNCALIBRATED if names is None else PROBABILITIES_UNCALIBRATED
    label_key, width = (F.LABEL, 1) if names is None else (F.LABELS, len(names))
    spec = {label_key: tf.io.FixedLenFeature([width], tf.int64)}
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no file matches --examples {pattern!r}")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size)
    serve = loaded.signatures["serving_default"]
    labels, cal, raw = [], [], []
    for batch in ds:
        out = serve(examples=batch)
        if raw_key not in out:
            raise ValueError(
                f"the model in {model_dir} serves no {raw_key!r}: it was exported "
                "without a calibration"
            )
        labels.append(tf.io.parse_example(batch, spec)[label_key].numpy())
        cal.append(out[out_key].numpy())
        raw.append(out[raw_key].numpy())
    return (
        list(names or ["probability"]),
        np.concatenate(labels),
        np.concatenate(cal).astype(np.float64),
        np.concatenate(raw).astype(np.float64),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel or serving dir")
    parser.add_argument("--examples", required=True, help="gzip TFRecord glob")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import numpy as np

    from morphhr_tf.evaluation import metrics
    from morphhr_tf.evaluation.calibration import expected_calibration_error

    names, y, cal, raw = served_and_labels(args.model, args.examples)
    print(f"{len(y)} examples from {args.examples}")
    print(
        f"{'output':<20} {'pos':>5} {'mean label':>10} {'mean p raw':>10} "
        f"{'mean p cal':>10} {'ECE raw':>8} {'ECE cal':>8} {'AUC raw':>8} {'AUC cal':>8}"
    )
    rows = []
    for j, name in enumerate(names):
        yj = y[:, j]
        two = 0 < yj.sum() < len(yj)
        row = {
            "output": name,
            "positives": int(yj.sum()),
            "mean_label": float(yj.mean()),
            "mean_uncalibrated": float(raw[:, j].mean()),
            "mean_calibrated": float(cal[:, j].mean()),
            "ece_uncalibrated": expected_calibration_error(yj, raw[:, j]),
            "ece_calibrated": expected_calibration_error(yj, cal[:, j]),
            "auc_uncalibrated": metrics.auc(yj, raw[:, j]) if two else float("nan"),
            "auc_calibrated": metrics.auc(yj, cal[:, j]) if two else float("nan"),
        }
        rows.append(row)
        print(
            f"{name:<20} {row['positives']:>5} {row['mean_label']:>10.4f} "
            f"{row['mean_uncalibrated']:>10.4f} {row['mean_calibrated']:>10.4f} "
            f"{row['ece_uncalibrated']:>8.4f} {row['ece_calibrated']:>8.4f} "
            f"{row['auc_uncalibrated']:>8.4f} {row['auc_calibrated']:>8.4f}"
        )
    if len(rows) > 1:
        mean = {
            k: float(np.mean([r[k] for r in rows]))
            for k in ("ece_uncalibrated", "ece_calibrated")
        }
        print(
            f"mean ECE over {len(rows)} outputs: {mean['ece_uncalibrated']:.4f} "
            f"uncalibrated, {mean['ece_calibrated']:.4f} calibrated"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"examples": len(y), "outputs": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
