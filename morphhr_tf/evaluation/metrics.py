"""Reader-study statistics for a binary classifier: AUC with a bootstrap
confidence interval, DeLong's test for two correlated AUCs, and operating
points (sensitivity at a fixed specificity and the converse).

All functions take plain arrays (labels 0/1, scores of any monotone scale) and
validate them first with :func:`check_binary`: one class only, NaN or infinite
scores, mismatched lengths and empty inputs raise ``ValueError`` naming what
was received. The ROC curve (:func:`roc_curve`) is scikit-learn's; AUCs and
DeLong's test come from ranks and need no curve.

References:
    DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or
    more correlated receiver operating characteristic curves: a nonparametric
    approach", Biometrics 44(3).
    Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing
    the areas under correlated receiver operating characteristic curves",
    IEEE Signal Processing Letters 21(11).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats
from sklearn import metrics as skm


@dataclasses.dataclass(frozen=True)
class AucResult:
    """An AUC with its stratified-bootstrap confidence interval."""

    auc: float
    ci_low: float
    ci_high: float
    n_positive: int
    n_negative: int
    n_bootstrap: int
    confidence: float

    def __str__(self) -> str:
        return f"{self.auc:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"


@dataclasses.dataclass(frozen=True)
class DelongResult:
    """DeLong's test of AUC(a) - AUC(b) on the same cases."""

    auc_a: float
    auc_b: float
    difference: float
    std_error: float
    z: float
    p_value: float


def check_binary(labels, scores, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validated binary labels and scores, as ``(int64 labels, float64 scores)``.

    Args:
        labels: 1-D 0/1 labels with both classes present.
        scores: 1-D finite scores, one per label.
        name: how error messages name ``scores``.

    Raises:
        ValueError: on mismatched shapes or lengths, no cases, labels other
            than 0/1, a single class, or NaN / infinite scores.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"labels and {name} must be 1-D. Received: labels.shape={y.shape}, "
            f"{name}.shape={s.shape}"
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"labels and {name} must have the same length. Received: "
            f"{y.shape[0]} labels and {s.shape[0]} {name}"
        )
    if y.size == 0:
        raise ValueError(
            "AUC needs at least one positive and one negative case. Received: no cases"
        )
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"labels must be 0/1. Received values: {sorted(values)[:10]}")
    y = y.astype(np.int64)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "AUC is undefined with a single class. Received: "
            f"{n_pos} positives and {n_neg} negatives"
        )
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(
            f"{name} must be finite. Received {int(bad.sum())} NaN/Inf values "
            f"(first at index {int(np.flatnonzero(bad)[0])})"
        )
    return y, s


def _auc_from_ranks(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted one half."""
    ranks = stats.rankdata(s)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc(labels, scores) -> float:
    """Area under the ROC curve (equal to scikit-learn's ``roc_auc_score``)."""
    y, s = check_binary(labels, scores)
    return _auc_from_ranks(y, s)


def auc_with_ci(
    labels,
    scores,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> AucResult:
    """AUC with a percentile confidence interval from a stratified bootstrap.

    Each replicate resamples the positive and the negative cases separately
    (with replacement), so every replicate keeps the original class counts and
    its AUC is always defined.

    Args:
        labels: 0/1 array.
        scores: array of the same length; higher means more likely positive.
        n_bootstrap: replicates (>= 100).
        seed: seed of the resampling.
        confidence: two-sided level of the interval, in (0, 1).

    Returns:
        An :class:`AucResult`.

    Raises:
        ValueError: on invalid inputs (see module docstring) or arguments.

    Example:
        >>> r = auc_with_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_bootstrap=200)
        >>> round(r.auc, 2)
        0.75
    """
    if not isinstance(n_bootstrap, int) or n_bootstrap < 100:
        raise ValueError(
            f"n_bootstrap must be an integer >= 100. Received: {n_bootstrap!r}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1). Received: {confidence!r}")
    y, s = check_binary(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    rng = np.random.default_rng(seed)
    # Rank-based AUC of each replicate, vectorised over replicates:
    # AUC = P(pos > neg) + 0.5 P(pos == neg), from ranks of the pooled sample.
    pos_idx = rng.integers(0, pos.size, size=(n_bootstrap, pos.size))
    neg_idx = rng.integers(0, neg.size, size=(n_bootstrap, neg.size))
    pooled = np.concatenate([pos[pos_idx], neg[neg_idx]], axis=1)
    ranks = stats.rankdata(pooled, axis=1)
    n_pos, n_neg = pos.size, neg.size
    replicate_aucs = (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (
        n_pos * n_neg
    )
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(replicate_aucs, [alpha, 1.0 - alpha])
    return AucResult(
        auc=_auc_from_ranks(y, s),
        ci_low=float(lo),
        ci_high=float(hi),
        n_positive=int(n_pos),
        n_negative=int(n_neg),
        n_bootstrap=n_bootstrap,
        confidence=confidence,
    )


def delong_covariance(labels, *score_sets) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix (Sun & Xu's midrank algorithm).

    Args:
        labels: 0/1 array of n cases.
        *score_sets: k score arrays of length n (k >= 1), from k models on the
            same cases.

    Returns:
        ``(aucs, cov)``: shape (k,) and (k, k).

    Raises:
        ValueError: on invalid inputs.
    """
    if not score_sets:
        raise ValueError("delong_covariance needs at least one score array.")
    checked = [
        check_binary(labels, s, name=f"scores[{i}]") for i, s in enumerate(score_sets)
    ]
    y = checked[0][0]
    scores = np.stack([s for _, s in checked])  # (k, n)
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)  # midranks within positives
    ty = stats.rankdata(neg, axis=1)  # midranks within negatives
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # pooled
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n  # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m  # ... and of the negatives
    sx = np.atleast_2d(np.cov(v01))
    sy = np.atleast_2d(np.cov(v10))
    return aucs, sx / m + sy / n


def delong_test(labels, scores_a, scores_b) -> DelongResult:
    """Two-sided DeLong test of equal AUCs for two models on the same cases.

    Returns:
        A :class:`DelongResult`; ``p_value`` is 1.0 when the two score sets
        give identical structural components (zero variance of the difference).

    Raises:
        ValueError: on invalid inputs.

    Example:
        >>> r = delong_test([0, 0, 1, 1, 0, 1], [.1, .2, .8, .9, .3, .7],
        ...                 [.3, .2, .4, .9, .5, .6])
        >>> r.difference > 0
        True
    """
    aucs, cov = delong_covariance(labels, scores_a, scores_b)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 1e-15:
        se, z, p = 0.0, 0.0, 1.0
    else:
        se = math.sqrt(var)
        z = diff / se
        p = float(2.0 * stats.norm.sf(abs(z)))
    return DelongResult(
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        difference=diff,
        std_error=se,
        z=z,
        p_value=p,
    )


def _check_rate(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]. Received: {name}={value!r}")


def sensitivity_at_specificity(
    labels, scores, specificity: float
) -> tuple[float, float]:
    """Highest sensitivity among thresholds whose specificity is >= the target.

    A case is called positive when ``score >= threshold``.

    Returns:
        ``(sensitivity, threshold)``.

    Raises:
        ValueError: on invalid inputs or a target outside [0, 1].
    """
    _check_rate(specificity, "specificity")
    fpr, tpr, thr = roc_curve(labels, scores)
    ok = (1.0 - fpr) >= specificity - 1e-12
    i = int(np.argmax(np.where(ok, tpr, -1.0)))
    return float(tpr[i]), float(thr[i])


def specificity_at_sensitivity(
    labels, scores, sensitivity: float
) -> tuple[float, float]:
    """Highest specificity among thresholds whose sensitivity is >= the target.

    Returns:
        ``(specificity, threshold)``.

    Raises:
        ValueError: on invalid inputs or a target outside [0, 1].
    """
    _check_rate(sensitivity, "sensitivity")
    fpr, tpr, thr = roc_curve(labels, scores)
    ok = tpr >= sensitivity - 1e-12
    i = int(np.argmax(np.where(ok, 1.0 - fpr, -1.0)))
    return float(1.0 - fpr[i]), float(thr[i])


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(fpr, tpr, thresholds)`` at every distinct score, highest
    threshold first, starting at (0, 0) with threshold ``inf``.

    This is scikit-learn's ``roc_curve`` with ``drop_intermediate=False``: the
    operating points search every threshold, and the plotted curve and its
    bootstrap band (:mod:`morphhr_tf.evaluation.plots`) keep every point.
    """
    y, s = check_binary(labels, scores)
    return skm.roc_curve(y, s, drop_intermediate=False)
