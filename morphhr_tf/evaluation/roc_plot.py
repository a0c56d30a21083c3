"""ROC curves from a TFMA evaluation, drawn to a PNG.

TFMA's ``ConfusionMatrixPlot`` stores confusion matrices at many thresholds;
the ROC curve is their (false positive rate, true positive rate) points.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


def roc_points(matrices: list[dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
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
        raise ValueError("roc_points needs at least one confusion matrix.")
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
                return roc_points(data.get("matrices", []))
    raise ValueError(
        f"No ConfusionMatrixPlot for slice {slice_key!r} in the evaluation."
    )


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    out_png: str,
    *,
    title: str = "ROC",
) -> str:
    """Draws one or more ROC curves to ``out_png``.

    Args:
        curves: ``{legend label: (fpr, tpr)}``.
        out_png: the PNG path.
        title: the plot title.

    Returns:
        ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
