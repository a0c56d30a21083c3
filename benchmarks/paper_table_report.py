"""The markdown report of ``benchmarks/paper_table.py``: the table, the ROC figure.

:func:`write_results` reads each row's test predictions (the CSVs the rows
wrote), computes the AUC with its bootstrap CI and DeLong's test against
ResNet18 at the same S with the package's metrics
(:mod:`morphhr_tf.evaluation.metrics`), prints the table, plots the ROC curves
beside the markdown and writes the markdown.
"""

from __future__ import annotations

import json
import os
import platform

PAPER_AUC = {  # CBIS-DDSM test AUCs reported by Wei et al. (2021)
    ("resnet18", 224): 0.7257,
    ("resnet18", 448): 0.7882,
    ("resnet18", 896): 0.7958,
    ("morphhr", 224): 0.7523,
    ("morphhr", 448): 0.7836,
    ("morphhr", 896): 0.7964,
}

ROW_NAMES = {"resnet18": "ResNet18", "morphhr": "MorphHR-ResNet18"}

TABLE_HEADER = [
    "| model | resolution | lr (eval AUC per lr) | test AUC [95% CI] "
    "| DeLong p vs ResNet18 at same S | train img/s | peak memory (MB) "
    "| paper AUC (CBIS-DDSM) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def _versions() -> str:
    import keras
    import tensorflow as tf

    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"


def _reference(kind: str, size: int, smallest: int, preds: dict) -> tuple | None:
    """The row a row's DeLong test compares with, or None.

    MorphHR rows: ResNet18 at the same S. Rows without one (ResNet18 rows, or
    MorphHR run without its ResNet18 row): this model at its smallest S.
    """
    if kind == "morphhr" and ("resnet18", size) in preds:
        return ("resnet18", size)
    if size != smallest:
        return (kind, smallest)
    return None


def _delong_cell(kind: str, size: int, smallest: int, preds: dict) -> str:
    """The table's DeLong column of one row: p (difference), or ``-``."""
    from morphhr_tf.evaluation import metrics as M

    ref_key = _reference(kind, size, smallest, preds)
    if ref_key is None:
        return "-"
    d, ref = preds[(kind, size)], preds[ref_key]
    assert ref["keys"] == d["keys"]
    t = M.delong_test(d["labels"], d["scores"], ref["scores"])
    p = f"{t.p_value:.3g} ({t.difference:+.4f})"
    if ref_key[0] == kind:
        p += f" vs {ROW_NAMES[kind]}_S{smallest}"
    return p


def table_lines(rows: list[dict], preds: dict) -> list[str]:
    """The markdown table: header, then ResNet18's rows and MorphHR's."""
    from morphhr_tf.evaluation import metrics as M

    lines = list(TABLE_HEADER)
    for kind in ("resnet18", "morphhr"):
        for r in (r for r in rows if r["kind"] == kind):
            d = preds[(kind, r["size"])]
            auc = M.auc_with_ci(d["labels"], d["scores"], n_bootstrap=2000)
            smallest = min(x["size"] for x in rows if x["kind"] == kind)
            p = _delong_cell(kind, r["size"], smallest, preds)
            paper = PAPER_AUC.get((kind, r["size"]))
            lines.append(
                f"| {ROW_NAMES[kind]}_S{r['size']} | {r['size']} | {r['lr']:g} "
                f"({', '.join(f'{k}: {v}' for k, v in r['grid'].items())}) | {auc} | {p} | "
                f"{r['img_per_s']:.2f} | {r['peak_mb']:.0f} | "
                f"{paper if paper is not None else '-'} |"
            )
    return lines


def _plot_roc(preds: dict, out_md: str, stem: str, profile_name: str) -> None:
    """The ROC figure, beside the markdown, named after it."""
    from morphhr_tf.evaluation import plots

    curves = {
        f"{ROW_NAMES[k]}_S{s}": (d["labels"], d["scores"])
        for (k, s), d in preds.items()
    }
    plots.plot_roc(
        curves,
        os.path.join(os.path.dirname(out_md), f"{stem}_roc.png"),
        ci_band=False,
        title=f"Synthetic test split ({profile_name} profile)",
    )


def _markdown(profile_name, profile, rows, data_summary, wall, labels, table, stem):
    """The report's text around ``table``."""
    import numpy as np

    counts = data_summary.get("per_split", {})
    return f"""# Results: the paper's table on the synthetic benchmark

Produced by `python benchmarks/paper_table.py --profile {profile_name}` on
{platform.machine()} with {os.cpu_count()} CPU cores ({_versions()}), precision
`{rows[0]["precision"]}`; wall time {wall / 60:.1f} minutes.

Data: {profile.patients} synthetic patients ({profile.synthetic_rows}-row images,
ingested at {max(profile.sizes)} px); splits (images) {json.dumps(counts)}; the test
split has {len(labels)} images, {int(np.sum(labels))} malignant.
Training: ResNet18 width {profile.width}, base trained {profile.base_steps} steps at
{min(profile.sizes)} px (learning rate {profile.learning_rate}) on the train split, then
every row {profile.steps} steps, batch {profile.batch_size}, AdamW with cosine decay, once
per peak learning rate in {list(profile.lrs)}; each row keeps the rate with the best
eval AUC (chosen on the eval split, never on test). ResNet18 rows train every layer at
that rate; MorphHR rows (detail branch `{profile.detail_branch}`) train the new layers
at it and the trunk at x{profile.trunk_lr_multiplier}. Class-balanced sampling, seed
{profile.seed}; fine-detail specks in the data: {profile.fine_detail}.

{table}

DeLong: two-sided, paired on the same test images, MorphHR minus ResNet18 in
brackets. The paper's column is CBIS-DDSM (real mammograms, full-width ImageNet
ResNet18 on a GPU), given for reference only: the synthetic data and the narrow
CPU network make the absolute numbers incomparable; the comparison that matters
is between rows of this table.

![ROC curves]({stem}_roc.png)
"""


def write_results(
    profile_name, profile, rows, data_summary, wall, out_md, default_steps
) -> str:
    """Prints the table and writes ``out_md`` with the ROC figure beside it.

    Args:
        profile_name, profile: the run's profile (its steps maybe overridden).
        rows: the kept run of every row (``run_row``'s result with ``grid``).
        data_summary: the ingest summary (``per_split`` image counts).
        wall: the run's wall time in seconds.
        out_md: the markdown's path.
        default_steps: the profile's own steps; other steps name the figure.

    Returns:
        ``out_md``.
    """
    from morphhr_tf.evaluation.report import read_predictions

    preds = {(r["kind"], r["size"]): read_predictions(r["predictions"]) for r in rows}
    table = "\n".join(table_lines(rows, preds))
    print(table)
    stem = os.path.splitext(os.path.basename(out_md))[0] + (
        "" if profile.steps == default_steps else f"_steps{profile.steps}"
    )
    _plot_roc(preds, out_md, stem, profile_name)
    labels = next(iter(preds.values()))["labels"]
    text = _markdown(
        profile_name, profile, rows, data_summary, wall, labels, table, stem
    )
    with open(out_md, "w") as f:
        f.write(text)
    return out_md
