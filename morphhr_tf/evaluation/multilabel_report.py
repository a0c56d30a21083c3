"""The evaluation report of multi-label models (e.g. ChestX-ray14's 14
findings): per-finding AUC with 95% CI, the mean AUC with its CI, and, with
several models, DeLong per finding and the mean-AUC difference against the
first (reference) model.

    python -m morphhr_tf.evaluation.report --predictions a.csv [b.csv ...] \\
        --labels Data_Entry_2017.csv --out DIR [--label-names A B ...] [--ci delong]

The inputs are read by :mod:`morphhr_tf.evaluation.multilabel_io`; the
statistics are :mod:`morphhr_tf.evaluation.multilabel`'s. Writes
``DIR/report.md``, ``DIR/report.json`` (NaN written as null), ``DIR/roc.png``
(one ROC panel per finding, the models overlaid) and ``DIR/left_out.csv``
(each case not used, with its reason, named by its join key: a local file).
``--ci delong`` gives the per-finding CIs from DeLong's variance: seconds
instead of about half a minute per finding and model on the 25,596 official
test images (the mean AUC's CI is always the row bootstrap).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Sequence

import numpy as np

from morphhr_tf.evaluation import multilabel as ML
from morphhr_tf.evaluation import multilabel_io as io
from morphhr_tf.evaluation import plots
from morphhr_tf.evaluation.left_out import left_out_lines

_JOINS = {"basename": "the base name of path = Image Index"}


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _model_section(name: str, d: dict, per: list, mean) -> list[str]:
    lines = [
        "",
        f"## {name}: AUC per finding ({len(d['keys'])} images)",
        "",
        "| finding | positives | negatives | AUC [95% CI] |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r.label} | {r.n_positive} | {r.n_negative} | {r} |" for r in per]
    if isinstance(mean, str):
        return lines + ["", f"Mean AUC: n/a ({mean})"]
    lines += [
        "",
        f"**Mean AUC over {len(mean.labels_averaged)} of {len(per)} findings: "
        f"{mean}** (95% CI: {mean.n_replicates_used} of {mean.n_bootstrap} "
        "bootstrap replicates resampling images).",
    ]
    if mean.labels_excluded:
        lines.append(
            f"Left out of the mean (a single class in the data): "
            f"{', '.join(mean.labels_excluded)}."
        )
    return lines


def _compare_section(ref: str, name: str, tests: list, diff, n: int) -> list[str]:
    lines = [
        "",
        f"## {name} vs {ref}: DeLong per finding ({n} images)",
        "",
        f"| finding | AUC {name} | AUC {ref} | difference | DeLong p |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in tests:
        if t.note:
            lines.append(f"| {t.label} | n/a | n/a | n/a | ({t.note}) |")
        else:
            lines.append(
                f"| {t.label} | {t.auc_a:.4f} | {t.auc_b:.4f} | "
                f"{t.difference:+.4f} | {t.p_value:.3g} |"
            )
    if isinstance(diff, str):
        return lines + ["", f"Mean AUC difference: n/a ({diff})"]
    floor = 1.0 / (1 + diff.n_replicates_used)  # no replicate as extreme
    p = f"<= {floor:.2g}" if diff.p_value <= floor else f"= {diff.p_value:.3g}"
    return lines + [
        "",
        f"**Mean AUC difference over {len(diff.labels_averaged)} findings: "
        f"{diff.mean_auc_a:.4f} - {diff.mean_auc_b:.4f} = {diff.difference:+.4f} "
        f"[{diff.ci_low:+.4f}, {diff.ci_high:+.4f}], p {p}** "
        f"(paired bootstrap over images, {diff.n_replicates_used} replicates).",
    ]


def _paired(ref: dict, other: dict, name: str) -> tuple[np.ndarray, ...]:
    """Labels, reference scores and other scores on the reference's cases."""
    index = {k: i for i, k in enumerate(other["keys"])}
    missing = [k for k in ref["keys"] if k not in index]
    if missing or len(index) != len(ref["keys"]):
        raise ValueError(
            f"{name}: its cases differ from the reference model's ({len(missing)} "
            f"of the reference's missing, first {missing[:1]}; {len(index)} vs "
            f"{len(ref['keys'])} cases); DeLong's test needs the same cases."
        )
    order = np.array([index[k] for k in ref["keys"]])
    return ref["labels"], ref["scores"], other["scores"][order]


def _multilabel_kind(reason: str) -> str:
    return "not scored" if " by predict" in reason else reason.split(": ")[0]


def _evaluate(d: dict, ci_method: str, n_bootstrap: int, seed: int) -> tuple:
    per = ML.per_label_auc(
        d["labels"],
        d["scores"],
        d["names"],
        ci_method=ci_method,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    try:
        mean = ML.mean_auc_with_ci(
            d["labels"], d["scores"], d["names"], n_bootstrap=n_bootstrap, seed=seed
        )
    except ValueError as e:  # no label with both classes, or too few positives
        mean = str(e)
    return per, mean


def _compare(ref: dict, d: dict, name: str, n_bootstrap: int, seed: int):
    y, s_ref, s_other = _paired(ref, d, name)
    tests = ML.delong_per_label(y, s_other, s_ref, d["names"])
    try:
        diff = ML.mean_auc_difference(
            y, s_other, s_ref, d["names"], n_bootstrap=n_bootstrap, seed=seed
        )
    except ValueError as e:
        diff = str(e)
    return tests, diff


def _as_json(result) -> dict | str:
    """A result dataclass as a JSON-ready dict (NaN -> None); a str as is."""
    if isinstance(result, str):
        return result
    out = dataclasses.asdict(result)
    return {
        k: _num(v) if isinstance(v, float) else list(v) if isinstance(v, tuple) else v
        for k, v in out.items()
    }


def build_multilabel_report(
    paths: Sequence[str],
    out_dir: str,
    names: Sequence[str] | None = None,
    *,
    labels: str | None,
    label_names: Sequence[str] | None = None,
    ci_method: str = "bootstrap",
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> str:
    """Writes ``report.md``, ``report.json``, ``roc.png`` and ``left_out.csv``.

    Args:
        paths: multi-label predictions CSVs; the first is the reference model.
        out_dir: the output folder.
        names: one name per model (default: the file names).
        labels: the labels file (NIH's data-entry CSV or 0/1 columns).
        label_names: the labels to evaluate (default: the first file's
            columns that are ChestX-ray14 findings).
        ci_method: per-finding CIs by ``bootstrap`` (stratified, as the
            binary report) or ``delong`` (much faster on a full test set).
        n_bootstrap: bootstrap replicates of every CI and of the mean-AUC test.
        seed: seed of the bootstrap.

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: for no labels file, unreadable inputs, mismatched names,
            or models that were not scored on the same cases.
    """
    if not paths:
        raise ValueError("build_multilabel_report needs at least one predictions CSV.")
    if labels is None:
        raise ValueError(
            "A multi-label report needs --labels (NIH's Data_Entry_2017.csv or a "
            "CSV with a 0/1 column per label). Received: labels=None"
        )
    names = list(names or [os.path.splitext(os.path.basename(p))[0] for p in paths])
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise ValueError(
            f"Need one distinct name per file. Received: {names} for {list(paths)}"
        )
    with open(paths[0], newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    table = io.read_label_table(labels, io.prediction_label_names(header, label_names))
    data = {n: io.read_multilabel_predictions(p, table) for n, p in zip(names, paths)}
    os.makedirs(out_dir, exist_ok=True)
    ref = names[0]
    kind = "NIH data entry" if table.kind == "nih" else "0/1 columns"
    join = _JOINS.get(data[ref]["join"], data[ref]["join"])
    ci = (
        f"stratified bootstrap, {n_bootstrap} replicates"
        if ci_method == "bootstrap"
        else "DeLong's variance, normal interval"
    )
    lines = [
        "# Evaluation report (multi-label)",
        "",
        f"Labels: `{os.path.basename(labels)}` ({kind}), joined on {join}. "
        f"Per-finding AUC CIs: {ci}; a finding with a single class has no AUC "
        "(n/a) and is left out of the mean.",
    ]
    lines += [f"Note: {n}" for n in table.notes]
    report_json: dict = {
        "labels_file": labels,
        "findings": list(table.names),
        "models": {},
    }
    for name in names:
        per, mean = _evaluate(data[name], ci_method, n_bootstrap, seed)
        lines += _model_section(name, data[name], per, mean)
        report_json["models"][name] = {
            "images": len(data[name]["keys"]),
            "per_finding": [_as_json(r) for r in per],
            "mean_auc": _as_json(mean),
        }
        if name != ref:
            tests, diff = _compare(data[ref], data[name], name, n_bootstrap, seed)
            lines += _compare_section(ref, name, tests, diff, len(data[ref]["keys"]))
            report_json["models"][name][f"vs_{ref}"] = {
                "delong_per_finding": [_as_json(t) for t in tests],
                "mean_auc_difference": _as_json(diff),
            }
    panels = {
        label: {n: (d["labels"][:, j], d["scores"][:, j]) for n, d in data.items()}
        for j, label in enumerate(table.names)
    }
    plots.plot_roc_grid(panels, os.path.join(out_dir, "roc.png"))
    lines += ["", "![ROC per finding](roc.png)"]
    lines += left_out_lines(data, out_dir, _multilabel_kind) + [""]
    report_json["left_out"] = {n: len(d["left_out"]) for n, d in data.items()}
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report_json, f, indent=2)
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(lines))
    return report
