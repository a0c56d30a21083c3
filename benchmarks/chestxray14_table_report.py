"""The report of ``benchmarks/chestxray14_table.py``: predictions, JSON, ROC grid,
markdown.

:func:`write_results` copies each row's kept test predictions (one probability
column per finding) and the test labels beside the markdown, reads them back
and computes every figure from those files with
:mod:`morphhr_tf.evaluation.multilabel`: per-finding AUC with a 95%
stratified-bootstrap CI, the mean AUC with a row-bootstrap CI, DeLong per
finding and the paired-bootstrap mean-AUC difference. It writes them to a
JSON, plots a ROC curve per finding, prints the table and writes the markdown.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import shutil

import numpy as np

from morphhr_tf.data.adapters.chestxray14 import FINDINGS

ROWS = ("ResNet18_S", "ResNet18_4S", "MorphHR_4S")
#: Each comparison is (a, b): a minus b.
COMPARISONS = (
    ("MorphHR_4S", "ResNet18_S"),
    ("MorphHR_4S", "ResNet18_4S"),
    ("ResNet18_4S", "ResNet18_S"),
)
#: The scale of each finding in the generator (chestxray14_render's docstring).
SCALE = {
    **dict.fromkeys(("Cardiomegaly", "Effusion", "Edema", "Emphysema"), "large"),
    **dict.fromkeys(("Mass", "Nodule"), "small"),
}
#: Published mean AUCs over the 14 findings on the real data, for orientation only.
REFERENCES = (
    ("Wang et al. 2017 (ResNet-50, official patient split; approximate)", 0.745),
    ("Rajpurkar et al. 2017 (CheXNet, DenseNet-121, random patient split)", 0.841),
)


def scale_of(finding: str) -> str:
    return SCALE.get(finding, "medium")


def read_matrix(path: str) -> tuple[list[str], np.ndarray]:
    """``(image keys, [N, 14] values)`` of a predictions or labels CSV."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    keys = [r["image_key"] for r in rows]
    values = np.array([[float(r[n]) for n in FINDINGS] for r in rows], np.float64)
    return keys, values


def write_labels(labels, keys, path: str) -> None:
    """The split's labels: ``image_key`` and one 0/1 column per finding."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_key", *FINDINGS])
        w.writerows([k, *map(int, row)] for k, row in zip(keys, labels))


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _clean(obj):
    """JSON-ready: dataclasses to dicts, NaN to null, tuples to lists."""
    if dataclasses.is_dataclass(obj):
        return _clean(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _num(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _mean_or_note(fn, *args, **kwargs):
    """``fn(...)``, or its ValueError's message (too few positives to bootstrap)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        return str(e)


def evaluate(y: np.ndarray, preds: dict, n_bootstrap: int, seed: int) -> dict:
    """Every figure of the table from the test labels and each row's scores."""
    from morphhr_tf.evaluation import multilabel as ML

    out = {"rows": {}, "comparisons": {}}
    for row, p in preds.items():
        out["rows"][row] = {
            "per_label": ML.per_label_auc(
                y, p, FINDINGS, n_bootstrap=n_bootstrap, seed=seed
            ),
            "mean": _mean_or_note(
                ML.mean_auc_with_ci, y, p, FINDINGS, n_bootstrap=n_bootstrap, seed=seed
            ),
        }
    for a, b in COMPARISONS:
        out["comparisons"][f"{a} - {b}"] = {
            "delong": ML.delong_per_label(y, preds[a], preds[b], FINDINGS),
            "mean_difference": _mean_or_note(
                ML.mean_auc_difference,
                y,
                preds[a],
                preds[b],
                FINDINGS,
                n_bootstrap=n_bootstrap,
                seed=seed,
            ),
        }
    return out


def _fmt_p(p) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.3g}"


def table_lines(y: np.ndarray, stats: dict) -> list[str]:
    """Per finding and mean AUC [CI], then DeLong per finding."""
    head = "| finding (scale) | positives in test | " + " | ".join(ROWS) + " |"
    lines = [head, "|" + " --- |" * (2 + len(ROWS))]
    per = {r: stats["rows"][r]["per_label"] for r in ROWS}
    for j, name in enumerate(FINDINGS):
        cells = [str(per[r][j]) for r in ROWS]
        lines.append(
            f"| {name} ({scale_of(name)}) | {int(y[:, j].sum())} | "
            + " | ".join(cells)
            + " |"
        )
    means = [str(stats["rows"][r]["mean"]) for r in ROWS]
    lines.append(
        f"| **mean AUC [95% CI]** | {len(y)} images | " + " | ".join(means) + " |"
    )
    for scale in ("small", "medium", "large"):
        idx = [j for j, n in enumerate(FINDINGS) if scale_of(n) == scale]
        cells = []
        for r in ROWS:
            vals = [per[r][j].auc for j in idx if per[r][j].defined]
            cells.append(f"{np.mean(vals):.4f}" if vals else "n/a")
        lines.append(
            f"| mean, {scale} findings ({len(idx)}) | - | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "DeLong per finding (two-sided, paired on the test images): "
        "AUC difference (p).",
        "",
    ]
    comps = list(stats["comparisons"])
    lines.append("| finding | " + " | ".join(comps) + " |")
    lines.append("|" + " --- |" * (1 + len(comps)))
    for j, name in enumerate(FINDINGS):
        cells = []
        for c in comps:
            t = stats["comparisons"][c]["delong"][j]
            cells.append(
                "n/a"
                if math.isnan(t.p_value)
                else f"{t.difference:+.4f} ({_fmt_p(t.p_value)})"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for c in comps:
        d = stats["comparisons"][c]["mean_difference"]
        cells.append(
            d
            if isinstance(d, str)
            else f"{d.difference:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (p {_fmt_p(d.p_value)})"
        )
    lines.append(
        "| **mean AUC, paired bootstrap [95% CI] (p)** | " + " | ".join(cells) + " |"
    )
    return lines


def plot_roc_grid(y: np.ndarray, preds: dict, path: str, title: str) -> None:
    """One ROC panel per finding, every row's curve in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, axes = plt.subplots(4, 4, figsize=(13, 13))
    for j, ax in enumerate(axes.flat):
        if j >= len(FINDINGS):
            ax.axis("off")
            continue
        ax.plot([0, 1], [0, 1], color="0.8", lw=0.8)
        if 0 < y[:, j].sum() < len(y):
            for row, p in preds.items():
                fpr, tpr, _ = roc_curve(y[:, j], p[:, j])
                ax.plot(fpr, tpr, lw=1.2, label=row)
        ax.set_title(
            f"{FINDINGS[j]} ({scale_of(FINDINGS[j])}, n+={int(y[:, j].sum())})",
            fontsize=9,
        )
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _versions() -> str:
    import keras
    import tensorflow as tf

    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"Python {platform.python_version()}"
    )


def _px(low: float, high: float, profile) -> str:
    """A radius range, fractions of the side, in pixels at S and at 4S."""
    return ", ".join(
        f"{low * n:.1f}-{high * n:.1f} px at {n} px"
        for n in (profile.base_size, profile.size)
    )


def _rates_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| row | input px | lr kept | eval mean AUC per lr | train img/s | params |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        grid = ", ".join(f"{k}: {v}" for k, v in r["grid"].items())
        lines.append(
            f"| {r['row']} | {r['size']} | {r['lr']:g} | {grid} | "
            f"{r['img_per_s']:.1f} | {r['params']:,} |"
        )
    return lines


def _markdown(name, profile, rows, data, wall, command, table, rates, stem, y):
    by_row = {r["row"]: r for r in rows}
    m = by_row["MorphHR_4S"]
    counts = data["counts"]
    refs = "\n".join(f"- {who}: mean AUC {auc}" for who, auc in REFERENCES)
    return f"""# ChestX-ray14 (synthetic): ResNet18 at S and 4S against MorphHR at 4S

Produced by `{command}` on {platform.machine()} with {os.cpu_count()} CPU cores
({_versions()}), precision `{rows[0]["precision"]}`; wall time {wall / 60:.1f} minutes
(generation, ingest, base, {len(rows) * len(profile.lrs)} runs, report).

**Data.** One synthetic ChestX-ray14 tree (`morphhr_tf.synthetic.chestxray14`,
{profile.patients} patients, `frequencies="uniform"`, {profile.size} px PNGs, seed
{profile.seed}), ingested once at {profile.size} px: the generator's `test_list.txt` is
the test split, eval is 20% of `train_val_list.txt` by patient. Images: train
{counts["train"]["images"]}, eval {counts["eval"]["images"]}, test {counts["test"]["images"]};
positives per finding and split in `{stem}/results.json` (`data.counts`).
About half the images say No Finding.

**Protocol** (that of the paper's table, `benchmarks/paper_table.py`). S = {profile.base_size},
4S = {profile.size}, ResNet18 width {profile.width}, 14 sigmoid outputs. One base
ResNet18 is trained {profile.base_steps} steps at S (learning rate {profile.learning_rate};
eval mean AUC {data["base"]["eval_mean_auc"]:.4f}); every row starts from it and trains
{profile.steps} steps, batch {profile.batch_size}, once per peak learning rate in
{list(profile.lrs)}, and keeps the rate with the best **eval** mean AUC (the test split
never chooses anything). ResNet18 rows train every layer at the rate; MorphHR_4S
(`build_morphhr`, detail branch `{profile.detail_branch}`) trains the new layers at it and
the trunk at x{profile.trunk_lr_multiplier}. Loss: the trainer's multilabel loss with
`balance="class_weight"` (each finding weighted by its training frequency); AdamW,
weight decay 1e-4, cosine decay after a 5% warm-up; augmentation {"on" if profile.augment else "off"}
(the package's augmentation flips images up-down, which turns a chest radiograph
upside down). Morph check of the kept MorphHR run (float32, eval split): mean AUC
before the morph {m.get("auc_before_morph", float("nan")):.4f}, right after it
{m.get("auc_after_morph", float("nan")):.4f}, max |p_morphhr(x) - p_base(pool(x))| =
{m.get("max_abs_diff_at_morph", float("nan")):.2e}.

**Statistics** (test split, {len(y)} images): per-finding AUC with a 95%
stratified-bootstrap CI, mean AUC over the 14 findings with a 95% row-bootstrap CI
({profile.n_bootstrap} replicates), DeLong per finding, and the paired-bootstrap
difference of the mean AUCs (`morphhr_tf.evaluation.multilabel`). Scale of a finding
in the generator (`morphhr_tf/synthetic/chestxray14_render.py`): small = Mass (radius
2.5-5% of the side: {_px(0.025, 0.05, profile)}) and Nodule (0.6-1.4%:
{_px(0.006, 0.014, profile)});
large = Cardiomegaly, Effusion, Edema, Emphysema; the rest medium.

{table}

Learning rates (each row's eval mean AUC at every rate of the grid) and training speed
(images/s after the first step, same machine, shared with other jobs):

{rates}

![ROC curves per finding]({stem}/roc_grid.png)

Files: `{stem}/<row>_test.csv` (image_key and one probability column per finding, the
kept run of each row), `{stem}/test_labels.csv`, `{stem}/results.json` (every number
above, the per-rate runs and the data counts).

**Published numbers, for orientation only** (real ChestX-ray14 images, full-width
ImageNet-pretrained networks on GPUs; not comparable with synthetic images and a
width-{profile.width} network trained for minutes on a CPU, nor with each other: the
splits differ):

{refs}
"""


def write_results(name, profile, rows, data, wall, out_md, command) -> str:
    """Writes the predictions, ``results.json``, the ROC grid and ``out_md``.

    Args:
        name, profile: the profile's name and the profile.
        rows: the kept run of every row (``best_of_grid``'s result).
        data: the data summary (``counts`` per split, ``base``).
        wall: the run's wall time in seconds.
        out_md: the markdown's path; the other files go to the folder of the
            same stem beside it.
        command: the command line that produced the run.

    Returns:
        ``out_md``.
    """
    stem = os.path.splitext(os.path.basename(out_md))[0]
    out_dir = os.path.join(os.path.dirname(out_md), stem)
    os.makedirs(out_dir, exist_ok=True)
    labels_src = os.path.join(
        os.path.dirname(rows[0]["predictions"]), "test_labels.csv"
    )
    shutil.copyfile(labels_src, os.path.join(out_dir, "test_labels.csv"))
    keys, y = read_matrix(os.path.join(out_dir, "test_labels.csv"))
    y = y.astype(np.int64)
    preds = {}
    for r in rows:
        path = os.path.join(out_dir, f"{r['row']}_test.csv")
        shutil.copyfile(r["predictions"], path)
        row_keys, preds[r["row"]] = read_matrix(path)
        if row_keys != keys:
            raise ValueError(f"{path}: image keys differ from the test labels'")
    stats = evaluate(y, preds, profile.n_bootstrap, profile.seed)
    table = "\n".join(table_lines(y, stats))
    rates = "\n".join(_rates_lines(rows))
    print(table + "\n\n" + rates, flush=True)
    plot_roc_grid(
        y,
        preds,
        os.path.join(out_dir, "roc_grid.png"),
        f"Synthetic ChestX-ray14 test split ({name} profile)",
    )
    result = {
        "command": command,
        "wall_seconds": round(wall, 1),
        "profile": name,
        "settings": dataclasses.asdict(profile),
        "findings": list(FINDINGS),
        "scale": {f: scale_of(f) for f in FINDINGS},
        "data": data,
        "rows": {
            r["row"]: {k: v for k, v in r.items() if k != "predictions"} for r in rows
        },
        "test": stats,
        "references_for_orientation": dict(REFERENCES),
    }
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(_clean(result), f, indent=1)
    with open(out_md, "w") as f:
        f.write(
            _markdown(name, profile, rows, data, wall, command, table, rates, stem, y)
        )
    return out_md
