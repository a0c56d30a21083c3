"""Markdown evaluation report from prediction CSVs, with plots.

    python -m morphhr_tf.evaluation.report --predictions a.csv [b.csv ...] --out DIR

Each CSV has a ``label`` column (0/1) and a ``probability`` (or ``score``)
column; an ``image_key`` or ``path`` column, when present in every file, pairs
the rows of different models for DeLong's test (otherwise rows are paired by
position and the labels must agree). The first file is the reference model.
Writes ``DIR/report.md`` and ``roc.png``, ``pr.png``, ``calibration.png``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from morphhr_tf.evaluation import metrics as M
from morphhr_tf.evaluation import plots

_SCORE_COLUMNS = ("probability", "score")
_KEY_COLUMNS = ("image_key", "path")


def read_predictions(path: str) -> dict:
    """Reads one predictions CSV into ``{"labels", "scores", "keys"}``.

    Raises:
        ValueError: naming the file and what is missing or malformed.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no prediction rows.")
    columns = rows[0].keys()
    score_col = next((c for c in _SCORE_COLUMNS if c in columns), None)
    if "label" not in columns or score_col is None:
        raise ValueError(
            f"{path}: needs a 'label' column and one of {_SCORE_COLUMNS}. "
            f"Received columns: {sorted(columns)}"
        )
    key_col = next((c for c in _KEY_COLUMNS if c in columns), None)
    labels, scores, keys = [], [], []
    for i, row in enumerate(rows, start=2):
        try:
            labels.append(int(row["label"]))
            scores.append(float(row[score_col]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}, line {i}: {e}") from e
        keys.append(row[key_col] if key_col else None)
    return {
        "labels": np.asarray(labels),
        "scores": np.asarray(scores),
        "keys": keys if key_col else None,
    }


def _align(reference: dict, other: dict, name: str) -> np.ndarray:
    """Scores of ``other`` in the order of ``reference``'s cases."""
    if reference["keys"] is not None and other["keys"] is not None:
        index = {k: i for i, k in enumerate(other["keys"])}
        missing = [k for k in reference["keys"] if k not in index]
        if missing:
            raise ValueError(
                f"{name}: {len(missing)} cases of the reference model are missing "
                f"(first: {missing[0]!r}); DeLong's test needs the same cases."
            )
        order = np.array([index[k] for k in reference["keys"]])
    else:
        order = np.arange(len(other["labels"]))
    if len(order) != len(reference["labels"]) or not np.array_equal(
        other["labels"][order], reference["labels"]
    ):
        raise ValueError(
            f"{name}: its cases or labels differ from the reference model's; "
            "add an image_key/path column to pair them."
        )
    return other["scores"][order]


def build_report(paths: list[str], out_dir: str, names: list[str] | None = None) -> str:
    """Writes the markdown report and plots; returns the report's path."""
    if not paths:
        raise ValueError("build_report needs at least one predictions CSV.")
    names = names or [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(names) != len(paths):
        raise ValueError(
            f"Received {len(names)} names for {len(paths)} prediction files."
        )
    os.makedirs(out_dir, exist_ok=True)
    data = {n: read_predictions(p) for n, p in zip(names, paths)}
    ref_name = names[0]
    lines = [
        "# Evaluation report",
        "",
        "| model | images | positives | AUC [95% CI] | sens @ spec 0.90 | "
        f"spec @ sens 0.90 | DeLong p vs {ref_name} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    curves = {}
    for name in names:
        d = data[name]
        r = M.auc_with_ci(d["labels"], d["scores"])
        sens, _ = M.sensitivity_at_specificity(d["labels"], d["scores"], 0.9)
        spec, _ = M.specificity_at_sensitivity(d["labels"], d["scores"], 0.9)
        if name == ref_name:
            p = "-"
        else:
            aligned = _align(data[ref_name], d, name)
            t = M.delong_test(
                data[ref_name]["labels"], aligned, data[ref_name]["scores"]
            )
            p = f"{t.p_value:.3g} (diff {t.difference:+.4f})"
        lines.append(
            f"| {name} | {len(d['labels'])} | {int(d['labels'].sum())} | {r} | "
            f"{sens:.3f} | {spec:.3f} | {p} |"
        )
        curves[name] = (d["labels"], d["scores"])
    plots.plot_roc(curves, os.path.join(out_dir, "roc.png"))
    plots.plot_precision_recall(curves, os.path.join(out_dir, "pr.png"))
    try:
        plots.plot_calibration(curves, os.path.join(out_dir, "calibration.png"))
        calib = "![calibration](calibration.png)"
    except ValueError as e:  # scores that are not probabilities
        calib = f"(no calibration diagram: {e})"
    lines += [
        "",
        "AUC CIs: stratified bootstrap, 2000 replicates. DeLong: two-sided, "
        "paired on the same cases.",
        "",
        "![ROC](roc.png) ![precision-recall](pr.png)",
        "",
        calib,
        "",
    ]
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", nargs="+", required=True)
    parser.add_argument("--names", nargs="+", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        path = build_report(args.predictions, args.out, args.names)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
