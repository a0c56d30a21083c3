"""Markdown evaluation report from prediction CSVs, with plots.

    python -m morphhr_tf.evaluation.report --predictions a.csv [b.csv ...] --out DIR
    python -m morphhr_tf.evaluation.report --predictions predictions.csv \\
        --labels labels.csv --out DIR [--exam-by patient]
    python -m morphhr_tf.evaluation.report --predictions chest.csv [b.csv ...] \\
        --labels Data_Entry_2017.csv --out DIR [--label-names A B] [--ci delong]

Each CSV has a ``label`` column (0/1) and a ``probability`` (or ``score``)
column; an ``image_key`` or ``path`` column, when present in every file, pairs
the rows of different models for DeLong's test (otherwise rows are paired by
position and the labels must agree). The first file is the reference model.
Writes ``DIR/report.md`` and ``roc.png``, ``pr.png``, ``calibration.png``.

``--labels`` takes the predict CLI's CSVs (:mod:`morphhr_tf.serving.predict`)
as they are, with the labels in a separate CSV (columns ``label`` and
``image_key`` or ``path``). The join key is the first of ``image_key``,
``path`` that both files have (paths are compared after
``os.path.normpath``, so write them as the predict CLI was given them). A
labels file may list a case twice with the same label; different labels for
one case are an error. Nothing is dropped silently: rows the predict CLI
rejected (``status`` other than ``ok``), predictions without a label and
labels without a prediction are counted in the report and listed, with the
reason, in ``DIR/left_out.csv`` (which names cases by their join key, so it is
as local as the predictions CSV; the report itself holds only counts).

When the predictions carry ``patient_key`` and ``laterality`` (the predict
CLI's CSV), the report adds AUC with its 95% CI at image, breast and exam
level (:mod:`morphhr_tf.evaluation.aggregate`: breast mean and max; exam
max over breasts of the breast means, mean and max; a breast or exam is
positive if any of its images is). ``--exam-by study`` (default) makes an
exam one patient's study, ``patient`` all of a patient's images. Images
without a patient key or laterality count at image level only.

Predictions of a multi-label model (a probability column per label, e.g.
ChestX-ray14's findings, or ``--label-names``) get the multi-label report
(:mod:`morphhr_tf.evaluation.multilabel_report`): AUC per finding and the mean
AUC with 95% CIs, DeLong per finding against the first model.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from morphhr_tf.evaluation import aggregate, multilabel_io, plots
from morphhr_tf.evaluation import metrics as M
from morphhr_tf.evaluation.left_out import left_out_lines
from morphhr_tf.evaluation.multilabel_report import build_multilabel_report

_SCORE_COLUMNS = ("probability", "score")
_KEY_COLUMNS = ("image_key", "path")
_LEVELS = (  # (level, aggregate score), recommended first
    ("breast", "mean"),
    ("breast", "max"),
    ("exam", "max_breast_mean"),
    ("exam", "mean"),
    ("exam", "max"),
)


def _read_rows(path: str, what: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no {what} rows.")
    return rows


def _case_key(row: dict[str, str], column: str) -> str:
    value = (row.get(column) or "").strip()
    return os.path.normpath(value) if column == "path" and value else value


def read_labels(path: str) -> tuple[dict[str, int], list[str]]:
    """Reads a labels CSV: ``({case key: 0/1}, key columns present)``.

    Raises:
        ValueError: naming the file for missing columns, a label other than
            0/1, an empty key, or one case with two different labels.
    """
    rows = _read_rows(path, "label")
    columns = [c for c in _KEY_COLUMNS if c in rows[0]]
    if "label" not in rows[0] or not columns:
        raise ValueError(
            f"{path}: needs a 'label' column and one of {_KEY_COLUMNS}. "
            f"Received columns: {sorted(rows[0])}"
        )
    labels: dict[str, int] = {}
    for i, row in enumerate(rows, start=2):
        key = _case_key(row, columns[0])
        text = (row["label"] or "").strip()
        if not key or text not in ("0", "1"):
            raise ValueError(
                f"{path}, line {i}: needs a {columns[0]} and a 0/1 label. "
                f"Received: label={text!r}"
            )
        if labels.setdefault(key, int(text)) != int(text):
            raise ValueError(f"{path}, line {i}: {key!r} has labels 0 and 1.")
    return labels, columns


def _join(rows: list[dict], labels_path: str, path: str) -> tuple[list, list]:
    """Prediction rows with their labels, and ``(key, reason)`` left out."""
    labels, label_columns = read_labels(labels_path)
    column = next((c for c in label_columns if c in rows[0]), None)
    if column is None:
        raise ValueError(
            f"{path} and {labels_path} share no key column {_KEY_COLUMNS}. "
            f"Received columns: {sorted(rows[0])} and {label_columns}"
        )
    joined, left_out, seen = [], [], set()
    for i, row in enumerate(rows, start=2):
        key = _case_key(row, column)
        if key in seen:
            raise ValueError(f"{path}, line {i}: {column} {key!r} is listed twice.")
        seen.add(key)
        status = (row.get("status") or "ok").strip()
        if status != "ok":
            reason = (row.get("reason") or "").strip()
            left_out.append((key, f"{status} by predict: {reason}".strip(": ")))
        elif key not in labels:
            left_out.append((key, "no label"))
        else:
            joined.append({**row, "label": str(labels[key])})
    left_out += [(k, "no prediction") for k in labels if k not in seen]
    if not joined:
        raise ValueError(
            f"no scored prediction in {path} has a label in {labels_path} "
            f"(joined on {column}; {len(left_out)} cases left out)."
        )
    return joined, left_out


def read_predictions(path: str, labels: str | None = None) -> dict:
    """Reads one predictions CSV into ``{"labels", "scores", "keys", "rows",
    "left_out"}``.

    Args:
        path: a predictions CSV (with a ``label`` column unless ``labels``).
        labels: a labels CSV to join (see the module docstring).

    Returns:
        ``labels``/``scores`` arrays and ``keys`` (or None) of the scored,
        labelled cases, their ``rows`` (dicts with ``label``), and
        ``left_out``: ``(key, reason)`` for every case not used.

    Raises:
        ValueError: naming the file and what is missing or malformed.
    """
    rows = _read_rows(path, "prediction")
    left_out: list[tuple[str, str]] = []
    if labels is not None:
        rows, left_out = _join(rows, labels, path)
    elif "status" in rows[0]:  # the predict CLI's CSV with a label column
        left_out = [
            (r.get("path", ""), f"{r['status']} by predict")
            for r in rows
            if r["status"] != "ok"
        ]
        rows = [r for r in rows if r["status"] == "ok"]
        if not rows:
            raise ValueError(f"{path}: no scored prediction rows.")
    columns = rows[0].keys()
    score_col = next((c for c in _SCORE_COLUMNS if c in columns), None)
    if "label" not in columns or score_col is None:
        raise ValueError(
            f"{path}: needs a 'label' column and one of {_SCORE_COLUMNS}. "
            f"Received columns: {sorted(columns)}"
        )
    key_col = next((c for c in _KEY_COLUMNS if c in columns), None)
    labels_, scores, keys = [], [], []
    for i, row in enumerate(rows, start=2):
        try:
            labels_.append(int(row["label"]))
            scores.append(float(row[score_col]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}, line {i}: {e}") from e
        keys.append(_case_key(row, key_col) if key_col else None)
    return {
        "labels": np.asarray(labels_),
        "scores": np.asarray(scores),
        "keys": keys if key_col else None,
        "rows": rows,
        "left_out": left_out,
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


def _auc_cell(labels: list[int], scores: list[float]) -> tuple[int, int, str]:
    """``(cases, positives, "AUC [CI]" or "n/a (why)")``."""
    try:
        cell = str(M.auc_with_ci(labels, scores))
    except ValueError as e:  # a single class or no cases at this level
        cell = f"n/a ({e})"
    return len(labels), int(sum(labels)), cell


def level_aucs(rows: list[dict], exam_by: str = "study") -> list[tuple]:
    """AUC with 95% CI at image, breast and exam level.

    Args:
        rows: scored, labelled per-image rows with ``patient_key``,
            ``study_key``, ``laterality`` (:mod:`~morphhr_tf.evaluation.aggregate`).
        exam_by: ``study`` or ``patient``.

    Returns:
        ``[(level, score, cases, positives, "AUC [CI]")]``: image; breast
        mean and max; exam max over breasts of the breast means, mean and max.
        Images without a patient key or laterality count at image level only.
    """
    score_col = next(c for c in _SCORE_COLUMNS if c in rows[0])
    image = _auc_cell(
        [int(r["label"]) for r in rows], [float(r[score_col]) for r in rows]
    )
    levels = [("image", score_col, *image)]
    used, _ = aggregate.partition_rows(rows)
    for level, how in _LEVELS:
        fn = aggregate.breast_scores if level == "breast" else aggregate.exam_scores
        agg = fn(used, how, exam_by=exam_by) if used else []
        recommended = (level, how) in (
            ("breast", aggregate.RECOMMENDED_BREAST_SCORE),
            ("exam", aggregate.RECOMMENDED_EXAM_SCORE),
        )
        name = f"{how} (recommended)" if recommended else how
        cell = _auc_cell([a["label"] for a in agg], [a["score"] for a in agg])
        levels.append((level, name, *cell))
    return levels


def _level_lines(data: dict, exam_by: str) -> list[str]:
    """The AUC-by-level section, for models whose rows carry patient keys."""
    names = [
        n
        for n, d in data.items()
        if {"patient_key", "laterality"} <= d["rows"][0].keys()
    ]
    if not names:
        return []
    lines = [
        "",
        "## AUC by level",
        "",
        "| model | level | score | cases | positives | AUC [95% CI] |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        rows = data[name]["rows"]
        for level in level_aucs(rows, exam_by):
            lines.append(f"| {name} | " + " | ".join(map(str, level)) + " |")
        _, out = aggregate.partition_rows(rows)
        if out:
            lines.append(
                f"| {name} | (left out of breast and exam) | | {len(out)} | | "
                "no patient key or laterality |"
            )
    exam = "one patient's study" if exam_by == "study" else "all of a patient's images"
    lines += [
        "",
        f"Breast: an exam's images of one laterality; exam: {exam} (a study "
        "that is unknown counts as the patient's). A breast or an exam is "
        "positive if any of its images is.",
    ]
    return lines


def _binary_kind(reason: str) -> str:
    return reason if reason in ("no label", "no prediction") else "not scored"


def build_report(
    paths: list[str],
    out_dir: str,
    names: list[str] | None = None,
    *,
    labels: str | None = None,
    exam_by: str = "study",
) -> str:
    """Writes the markdown report and plots; returns the report's path.

    Args:
        paths: predictions CSVs; the first is the reference model.
        out_dir: where ``report.md``, the plots and ``left_out.csv`` go.
        names: one name per model (default: the file names).
        labels: a labels CSV to join to every predictions CSV.
        exam_by: ``study`` or ``patient``: what an exam is at exam level.

    Raises:
        ValueError: for unreadable inputs, unpaired cases, or arguments.
    """
    if exam_by not in aggregate.EXAM_BY:
        raise ValueError(
            f"exam_by must be one of {aggregate.EXAM_BY}. Received: {exam_by!r}"
        )
    if not paths:
        raise ValueError("build_report needs at least one predictions CSV.")
    names = names or [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(names) != len(paths):
        raise ValueError(
            f"Received {len(names)} names for {len(paths)} prediction files."
        )
    os.makedirs(out_dir, exist_ok=True)
    data = {n: read_predictions(p, labels) for n, p in zip(names, paths)}
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
    ]
    lines += (
        _level_lines(data, exam_by) + left_out_lines(data, out_dir, _binary_kind) + [""]
    )
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", nargs="+", required=True)
    parser.add_argument("--names", nargs="+", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--labels", default=None, help="labels CSV (label + image_key or path)"
    )
    parser.add_argument("--exam-by", default="study", choices=aggregate.EXAM_BY)
    parser.add_argument(
        "--label-names", nargs="+", default=None, help="multi-label: label columns"
    )
    parser.add_argument(
        "--ci", default="bootstrap", choices=("bootstrap", "delong"), help="multi-label"
    )
    args = parser.parse_args(argv)
    try:
        if multilabel_io.is_multilabel(args.predictions[0], args.label_names):
            path = build_multilabel_report(
                args.predictions,
                args.out,
                args.names,
                labels=args.labels,
                label_names=args.label_names,
                ci_method=args.ci,
            )
        else:
            path = build_report(
                args.predictions,
                args.out,
                args.names,
                labels=args.labels,
                exam_by=args.exam_by,
            )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    left_out = os.path.join(args.out, "left_out.csv")
    if os.path.exists(left_out):
        with open(left_out, newline="") as f:
            n = sum(1 for _ in f) - 1
        print(f"{n} cases left out (listed in {left_out})", file=sys.stderr)
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
