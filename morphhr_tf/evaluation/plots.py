"""ROC, precision-recall and calibration curves, drawn to PNG files.

The curves are scikit-learn's: ``roc_curve`` (through
:func:`morphhr_tf.evaluation.metrics.roc_curve`, which the operating points
share), ``precision_recall_curve`` with ``average_precision_score``, and
``calibration_curve``. This module adds what the reports need on top: a
bootstrap confidence band of the ROC curve, operating-point markers, AUC
[95% CI] and AP in the legends, and the histogram under the reliability
diagram.

:func:`plot_roc`, :func:`plot_precision_recall` and :func:`plot_calibration`
take ``{model name: (labels, scores)}``: one entry draws one model, several
entries overlay them on the same axes. :func:`plot_roc_grid` draws one small
ROC panel per label of a multi-label model. A TFMA evaluation stores no scores, only
confusion matrices at thresholds: :func:`roc_from_eval_result` reads its ROC
points and :func:`plot_roc_points` draws them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402

from morphhr_tf.evaluation import metrics as M  # noqa: E402

Curves = Mapping[str, tuple[Sequence, Sequence]]


def _check_curves(curves: Curves) -> None:
    if not curves:
        raise ValueError("Nothing to plot: received an empty mapping of models.")


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def roc_band(labels, scores, *, n_bootstrap=200, seed=0, grid=None):
    """Pointwise 95% band of the ROC curve from a stratified bootstrap.

    Returns:
        ``(fpr_grid, tpr_low, tpr_high)``.
    """
    y, s = M.check_binary(labels, scores)
    grid = np.linspace(0, 1, 101) if grid is None else grid
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    tprs = []
    for _ in range(n_bootstrap):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        fpr, tpr, _ = M.roc_curve(y[idx], s[idx])
        tprs.append(np.interp(grid, fpr, tpr))
    lo, hi = np.quantile(np.asarray(tprs), [0.025, 0.975], axis=0)
    return grid, lo, hi


def plot_roc(
    curves: Curves,
    path: str,
    *,
    operating_specificities: Sequence[float] = (0.9,),
    ci_band: bool = True,
    title: str = "ROC",
) -> str:
    """ROC curves with AUC [95% CI] in the legend, a bootstrap band and the
    operating points at the given specificities. Returns the PNG path."""
    _check_curves(curves)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = M.roc_curve(labels, scores)
        r = M.auc_with_ci(labels, scores)
        (line,) = ax.plot(fpr, tpr, lw=1.8, label=f"{name}: AUC {r}")
        if ci_band:
            g, lo, hi = roc_band(labels, scores)
            ax.fill_between(g, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        for spec in operating_specificities:
            sens, _ = M.sensitivity_at_specificity(labels, scores, spec)
            ax.plot(1 - spec, sens, "o", color=line.get_color(), ms=6)
            if len(curves) > 1:
                continue  # overlays: markers only, labels would collide
            ax.annotate(
                f"sens {sens:.2f} @ spec {spec:.2f}",
                (1 - spec, sens),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=7,
                color=line.get_color(),
            )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(
        xlabel="1 - specificity (false positive rate)",
        ylabel="sensitivity (true positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_grid(
    panels: Mapping[str, Curves],
    path: str,
    *,
    columns: int = 4,
    title: str = "ROC per finding",
) -> str:
    """One small ROC panel per label (e.g. ChestX-ray14's 14 findings), each
    overlaying the models with their AUC in the legend.

    Args:
        panels: ``{label name: {model name: (labels, scores)}}``; a label
            whose labels hold a single class gets an empty panel saying so.
        path: the PNG path.
        columns: panels per row.
        title: the figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: for no panels, a panel without models, or ``columns < 1``.
    """
    if not panels or not all(panels.values()):
        raise ValueError(
            "Nothing to plot: every label needs at least one model. Received: "
            f"{ {k: list(v) for k, v in panels.items()} }"
        )
    if columns < 1:
        raise ValueError(f"columns must be >= 1. Received: {columns!r}")
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.7 * cols, 2.7 * rows), squeeze=False
    )
    for ax, (label, curves) in zip(axes.ravel(), panels.items()):
        y0 = np.asarray(next(iter(curves.values()))[0])
        ax.set_title(f"{label} ({int(y0.sum())} of {y0.size})", fontsize=8)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.6)
        for name, (labels, scores) in curves.items():
            try:
                fpr, tpr, _ = M.roc_curve(labels, scores)
            except ValueError:
                ax.text(0.5, 0.5, "single class:\nno AUC", ha="center", fontsize=8)
                break
            auc = M.auc(labels, scores)
            text = f"{name}: {auc:.3f}" if len(curves) > 1 else f"AUC {auc:.3f}"
            ax.plot(fpr, tpr, lw=1.2, label=text)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=6, handlelength=1.2)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.supxlabel("1 - specificity", fontsize=8)
    fig.supylabel("sensitivity", fontsize=8)
    fig.suptitle(f"{title} (positives of images; AUC in the legend)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_precision_recall(
    curves: Curves, path: str, *, title="Precision-recall"
) -> str:
    """Precision-recall curves with the positive rate as the chance line."""
    _check_curves(curves)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for name, (labels, scores) in curves.items():
        y, s = M.check_binary(labels, scores)
        # scikit-learn's curve groups tied scores into one threshold, so the
        # AP does not depend on the order of tied rows.
        precision, recall, _ = precision_recall_curve(y, s)
        ap = float(average_precision_score(y, s))
        ax.step(recall, precision, where="post", lw=1.6, label=f"{name}: AP {ap:.3f}")
    prevalence = float(np.mean(np.asarray(next(iter(curves.values()))[0])))
    ax.axhline(prevalence, ls="--", color="grey", lw=0.8, label="chance")
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title=title
    )
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def calibration_bins(labels, scores, n_bins: int = 10):
    """Mean predicted probability, observed positive rate and count per bin.

    The bins split [0, 1] into ``n_bins`` equal widths. The means and rates of
    the non-empty bins are scikit-learn's ``calibration_curve`` (uniform
    strategy; a score on an inner edge falls in the lower bin); empty bins
    have count 0 and NaN mean and rate.

    Raises:
        ValueError: if scores fall outside [0, 1] (they must be probabilities).
    """
    y, s = M.check_binary(labels, scores)
    if s.min() < 0 or s.max() > 1:
        raise ValueError(
            "Calibration needs probabilities in [0, 1]. Received scores in "
            f"[{s.min():.4g}, {s.max():.4g}]"
        )
    observed_rate, mean_prob = calibration_curve(
        y, s, n_bins=n_bins, strategy="uniform"
    )
    inner_edges = np.linspace(0, 1, n_bins + 1)[1:-1]
    counts = np.bincount(np.searchsorted(inner_edges, s), minlength=n_bins)
    mean_p, observed = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    mean_p[counts > 0], observed[counts > 0] = mean_prob, observed_rate
    return mean_p, observed, counts


def plot_calibration(
    curves: Curves, path: str, *, n_bins=10, title="Calibration"
) -> str:
    """Reliability diagram: observed positive rate against mean predicted
    probability per bin (empty bins omitted), with the histogram below."""
    _check_curves(curves)
    fig, (ax, hx) = plt.subplots(
        2, 1, figsize=(5.2, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    for name, (labels, scores) in curves.items():
        mean_p, observed, counts = calibration_bins(labels, scores, n_bins)
        keep = counts > 0
        ax.plot(mean_p[keep], observed[keep], "o-", lw=1.4, label=name)
        hx.hist(
            np.asarray(scores, float), bins=np.linspace(0, 1, n_bins + 1), alpha=0.5
        )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect")
    ax.set(ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    hx.set(xlabel="predicted probability", ylabel="images")
    return _save(fig, path)


# ROC of a TFMA evaluation. TFMA's ``ConfusionMatrixPlot`` keeps confusion
# matrices at many thresholds but no scores, so scikit-learn's ``roc_curve``
# cannot apply: the ROC points are the matrices' (fpr, tpr).


def _find(tree: Any, key: str) -> Any:
    """Depth-first search of nested dicts for ``key``."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def roc_from_confusion_matrices(
    matrices: list[dict[str, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) arrays, sorted by fpr, from TFMA confusion matrices.

    Args:
        matrices: dicts with ``truePositives``, ``falsePositives``,
            ``trueNegatives`` and ``falseNegatives`` (missing counts are 0).

    Returns:
        ``(fpr, tpr)`` including the (0, 0) and (1, 1) end points.

    Raises:
        ValueError: when there are no matrices or a class has no examples.
    """
    if not matrices:
        raise ValueError("A ROC curve needs at least one confusion matrix.")
    fpr, tpr = [0.0, 1.0], [0.0, 1.0]
    for m in matrices:
        tp, fp = m.get("truePositives", 0.0), m.get("falsePositives", 0.0)
        tn, fn = m.get("trueNegatives", 0.0), m.get("falseNegatives", 0.0)
        if tp + fn <= 0 or fp + tn <= 0:
            raise ValueError(
                "A ROC curve needs positives and negatives. Received a matrix "
                f"with TP={tp}, FN={fn}, FP={fp}, TN={tn}"
            )
        fpr.append(fp / (fp + tn))
        tpr.append(tp / (tp + fn))
    order = np.lexsort((np.asarray(tpr), np.asarray(fpr)))
    return np.asarray(fpr)[order], np.asarray(tpr)[order]


def roc_from_eval_result(eval_result: Any, slice_key: tuple = ()) -> tuple:
    """(fpr, tpr) of one slice of a ``tfma.EvalResult`` (overall by default).

    Raises:
        ValueError: if the slice or its ``ConfusionMatrixPlot`` is missing.
    """
    # A slice may appear more than once (e.g. next to a baseline's entries).
    for key, plots in eval_result.plots:
        if tuple(key) == tuple(slice_key):
            data = _find(plots, "confusionMatrixAtThresholds")
            if data is not None:
                return roc_from_confusion_matrices(data.get("matrices", []))
    raise ValueError(
        f"No ConfusionMatrixPlot for slice {slice_key!r} in the evaluation."
    )


def plot_roc_points(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    out_png: str,
    *,
    title: str = "ROC",
) -> str:
    """Draws ROC curves given as points, e.g. from :func:`roc_from_eval_result`.

    Args:
        curves: ``{legend label: (fpr, tpr)}``.
        out_png: the PNG path.
        title: the plot title.

    Returns:
        ``out_png``.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for label, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, lw=1.8, label=label)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
