"""Evaluation plots as PNG files: ROC (with operating points and a bootstrap
confidence band), precision-recall and calibration (reliability) diagrams.

Each function takes a mapping ``{model name: (labels, scores)}``: one entry
draws one model, several entries overlay them on the same axes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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
        fpr, tpr, _ = M.roc_points(y[idx], s[idx])
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

    Raises:
        ValueError: if scores fall outside [0, 1] (they must be probabilities).
    """
    y, s = M.check_binary(labels, scores)
    if s.min() < 0 or s.max() > 1:
        raise ValueError(
            "Calibration needs probabilities in [0, 1]. Received scores in "
            f"[{s.min():.4g}, {s.max():.4g}]"
        )
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    mean_p = np.bincount(which, weights=s, minlength=n_bins)
    observed = np.bincount(which, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return mean_p / counts, observed / counts, counts


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
