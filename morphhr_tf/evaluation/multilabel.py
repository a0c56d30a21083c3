"""Multi-label AUC statistics: AUC per label with a 95% CI, the mean AUC over
labels with a bootstrap CI, and two models compared per label (DeLong) and on
the mean AUC (paired bootstrap).

Labels are an ``[N, L]`` 0/1 array (one row per image, one column per label,
e.g. ChestX-ray14's 14 findings) and scores an ``[N, L]`` array of finite
scores. A label whose column holds a single class has no AUC: it is reported
as NaN, with a note, and left out of the mean, which states how many labels
it averages. Single-label quantities come from
:mod:`morphhr_tf.evaluation.metrics` (the stratified bootstrap CI of
:func:`~morphhr_tf.evaluation.metrics.auc_with_ci`, DeLong's variance and
test), so one column of these functions is exactly the binary result.

The mean AUC's CI resamples images (rows) with replacement, all labels
jointly, and recomputes the mean of the per-label AUCs on each replicate
(the same replicates for both models in a paired comparison). A replicate in
which an averaged label has a single class has no mean AUC: it is dropped and
the number used is reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from morphhr_tf.evaluation import metrics as M

CI_METHODS = ("bootstrap", "delong")


@dataclasses.dataclass(frozen=True)
class LabelAuc:
    """One label's AUC and CI; NaN with a ``note`` when undefined."""

    label: str
    auc: float
    ci_low: float
    ci_high: float
    n_positive: int
    n_negative: int
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.auc)

    def __str__(self) -> str:
        if not self.defined:
            return f"n/a ({self.note})"
        return f"{self.auc:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"


@dataclasses.dataclass(frozen=True)
class MeanAucResult:
    """Mean of the defined per-label AUCs with a row-bootstrap CI."""

    mean_auc: float
    ci_low: float
    ci_high: float
    labels_averaged: tuple[str, ...]
    labels_excluded: tuple[str, ...]
    n_bootstrap: int  # replicates requested
    n_replicates_used: int  # replicates in which every averaged label is defined
    confidence: float

    def __str__(self) -> str:
        return f"{self.mean_auc:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"


@dataclasses.dataclass(frozen=True)
class LabelDelong:
    """DeLong's test of one label, or NaNs with a ``note`` when undefined."""

    label: str
    auc_a: float
    auc_b: float
    difference: float
    p_value: float
    note: str = ""


@dataclasses.dataclass(frozen=True)
class MeanAucDifference:
    """Mean AUC of model a minus model b, with a paired-bootstrap CI and p."""

    mean_auc_a: float
    mean_auc_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    labels_averaged: tuple[str, ...]
    labels_excluded: tuple[str, ...]
    n_replicates_used: int


def check_multilabel(
    labels, scores, label_names: Sequence[str] | None = None, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Validated ``(int64 labels [N, L], float64 scores [N, L], names)``.

    Unlike :func:`~morphhr_tf.evaluation.metrics.check_binary`, a column with
    a single class is allowed (its AUC is NaN).

    Args:
        labels: ``[N, L]`` 0/1 labels.
        scores: ``[N, L]`` finite scores.
        label_names: L distinct names (default ``label_0`` ...).
        name: how error messages name ``scores``.

    Returns:
        The checked arrays and the label names.

    Raises:
        ValueError: on shapes other than matching ``[N, L]`` with N, L >= 1,
            labels other than 0/1, NaN/Inf scores, or names that do not match
            the columns one to one.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape or 0 in y.shape:
        raise ValueError(
            f"labels and {name} must be [N, L] arrays of the same shape with "
            f"N, L >= 1. Received: labels.shape={y.shape}, {name}.shape={s.shape}"
        )
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"labels must be 0/1. Received values: {sorted(values)[:10]}")
    bad = ~np.isfinite(s)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must be finite. Received {int(bad.sum())} NaN/Inf values "
            f"(first at row {int(row)}, column {int(col)})"
        )
    names = tuple(label_names) if label_names is not None else None
    if names is None:
        names = tuple(f"label_{i}" for i in range(y.shape[1]))
    if len(names) != y.shape[1] or len(set(names)) != len(names):
        raise ValueError(
            f"label_names must name the {y.shape[1]} columns once each. "
            f"Received: {list(names)}"
        )
    return y.astype(np.int64), s, names


def _undefined_note(n_pos: int, n_neg: int) -> str:
    return f"single class: {n_pos} positives, {n_neg} negatives"


def _delong_ci(y: np.ndarray, s: np.ndarray, confidence: float) -> tuple:
    aucs, cov = M.delong_covariance(y, s)
    half = stats.norm.ppf(0.5 + confidence / 2.0) * math.sqrt(max(cov[0, 0], 0.0))
    return float(aucs[0]), max(aucs[0] - half, 0.0), min(aucs[0] + half, 1.0)


def per_label_auc(
    labels,
    scores,
    label_names: Sequence[str] | None = None,
    *,
    ci_method: str = "bootstrap",
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[LabelAuc]:
    """AUC with a CI for every label (column).

    Args:
        labels: ``[N, L]`` 0/1 labels.
        scores: ``[N, L]`` scores; higher means more likely positive.
        label_names: L names (default ``label_0`` ...).
        ci_method: ``bootstrap`` (stratified, as
            :func:`~morphhr_tf.evaluation.metrics.auc_with_ci`) or ``delong``
            (normal interval from DeLong's variance, clipped to [0, 1]).
        n_bootstrap: replicates of the bootstrap (>= 100).
        seed: seed of the bootstrap (the same for every label).
        confidence: two-sided level, in (0, 1).

    Returns:
        One :class:`LabelAuc` per label, in column order; NaN AUC and CI with
        a note for a label with a single class.

    Raises:
        ValueError: on invalid inputs or arguments.

    Example:
        >>> r = per_label_auc([[0, 1], [1, 1]], [[.2, .5], [.7, .4]], ["A", "B"])
        >>> r[0].auc, r[1].defined
        (1.0, False)
    """
    if ci_method not in CI_METHODS:
        raise ValueError(
            f"ci_method must be one of {CI_METHODS}. Received: {ci_method!r}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1). Received: {confidence!r}")
    y, s, names = check_multilabel(labels, scores, label_names)
    results = []
    for j, label in enumerate(names):
        n_pos = int(y[:, j].sum())
        n_neg = int(y.shape[0] - n_pos)
        if n_pos == 0 or n_neg == 0:
            nan = float("nan")
            note = _undefined_note(n_pos, n_neg)
            results.append(LabelAuc(label, nan, nan, nan, n_pos, n_neg, note))
            continue
        if ci_method == "delong":
            auc, lo, hi = _delong_ci(y[:, j], s[:, j], confidence)
        else:
            r = M.auc_with_ci(
                y[:, j],
                s[:, j],
                n_bootstrap=n_bootstrap,
                seed=seed,
                confidence=confidence,
            )
            auc, lo, hi = r.auc, r.ci_low, r.ci_high
        results.append(LabelAuc(label, auc, float(lo), float(hi), n_pos, n_neg))
    return results


class _RankIndex:
    """Per-label distinct-score indices, for AUCs under integer row weights.

    With weights w (a bootstrap replicate's counts of each row), the AUC of
    label l is ``sum_u P_u (N_<u + N_u / 2) / (P N)``, where ``P_u`` and
    ``N_u`` are the positive and negative weight at distinct score u and
    ``N_<u`` the negative weight below it: the Mann-Whitney AUC of the
    resampled data, ties counted one half, in O(N L) per replicate.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray):
        n, n_labels = y.shape
        codes, starts, offset = np.empty((n, n_labels), np.int64), [], 0
        for j in range(n_labels):
            _, inverse = np.unique(s[:, j], return_inverse=True)
            codes[:, j] = inverse.ravel() + offset
            starts.append(offset)
            offset += int(inverse.max()) + 1
        self.y = y.astype(np.float64)
        self.codes = codes.ravel()
        self.starts = np.asarray(starts)
        self.size = offset

    def aucs(self, weights: np.ndarray) -> np.ndarray:
        """``[L]`` AUCs under row ``weights`` (NaN where a class has no weight)."""
        wy = weights[:, None] * self.y
        pos = np.bincount(self.codes, wy.ravel(), self.size)
        neg = np.bincount(self.codes, (weights[:, None] - wy).ravel(), self.size)
        cum = np.cumsum(neg) - neg  # negative weight below, across all segments
        below = cum - np.repeat(
            cum[self.starts], np.diff(np.r_[self.starts, self.size])
        )
        num = np.add.reduceat(pos * (below + 0.5 * neg), self.starts)
        p, q = np.add.reduceat(pos, self.starts), np.add.reduceat(neg, self.starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((p > 0) & (q > 0), num / (p * q), np.nan)


def _check_bootstrap(n_bootstrap: int, confidence: float) -> None:
    if not isinstance(n_bootstrap, int) or n_bootstrap < 100:
        raise ValueError(
            f"n_bootstrap must be an integer >= 100. Received: {n_bootstrap!r}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1). Received: {confidence!r}")


def _replicate_means(
    y: np.ndarray, score_sets: list[np.ndarray], keep: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """``[R, k]`` mean AUCs over the ``keep`` labels of R <= n replicates that
    resample rows jointly (the same rows for every score set)."""
    indices = [_RankIndex(y[:, keep], s[:, keep]) for s in score_sets]
    rng = np.random.default_rng(seed)
    means = np.empty((n, len(score_sets)))
    for b in range(n):
        weights = np.bincount(
            rng.integers(0, y.shape[0], y.shape[0]), minlength=y.shape[0]
        )
        means[b] = [idx.aucs(weights.astype(np.float64)).mean() for idx in indices]
    return means[~np.isnan(means).any(axis=1)]


def _averaged(y: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    n_pos = y.sum(axis=0)
    keep = (n_pos > 0) & (n_pos < y.shape[0])
    if not keep.any():
        raise ValueError(
            "The mean AUC needs a label with both classes. Received positives "
            f"per label: {dict(zip(names, n_pos.tolist()))} of {y.shape[0]} cases"
        )
    return keep


def mean_auc_with_ci(
    labels,
    scores,
    label_names: Sequence[str] | None = None,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MeanAucResult:
    """Mean AUC over the labels with both classes, with a bootstrap CI.

    Args:
        labels: ``[N, L]`` 0/1 labels.
        scores: ``[N, L]`` scores.
        label_names: L names (default ``label_0`` ...).
        n_bootstrap: replicates (>= 100), each resampling rows jointly.
        seed: seed of the resampling.
        confidence: two-sided level, in (0, 1).

    Returns:
        A :class:`MeanAucResult` naming the labels averaged and excluded.

    Raises:
        ValueError: on invalid inputs or arguments, when no label has both
            classes, or when no replicate keeps both classes in every
            averaged label (too few positives to bootstrap).
    """
    _check_bootstrap(n_bootstrap, confidence)
    y, s, names = check_multilabel(labels, scores, label_names)
    keep = _averaged(y, names)
    means = _replicate_means(y, [s], keep, n_bootstrap, seed)[:, 0]
    if means.size == 0:
        raise ValueError(
            f"No bootstrap replicate of {n_bootstrap} kept both classes in every "
            "averaged label: too few positives for a CI of the mean AUC."
        )
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return MeanAucResult(
        mean_auc=float(_RankIndex(y[:, keep], s[:, keep]).aucs(np.ones(len(y))).mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        labels_averaged=tuple(n for n, k in zip(names, keep) if k),
        labels_excluded=tuple(n for n, k in zip(names, keep) if not k),
        n_bootstrap=n_bootstrap,
        n_replicates_used=int(means.size),
        confidence=confidence,
    )


def delong_per_label(
    labels, scores_a, scores_b, label_names: Sequence[str] | None = None
) -> list[LabelDelong]:
    """DeLong's two-sided test of AUC(a) - AUC(b) for every label.

    Args:
        labels: ``[N, L]`` 0/1 labels.
        scores_a: ``[N, L]`` scores of model a on the same images.
        scores_b: ``[N, L]`` scores of model b, rows in the same order.
        label_names: L names (default ``label_0`` ...).

    Returns:
        One :class:`LabelDelong` per label; NaNs with a note for a label
        with a single class.

    Raises:
        ValueError: on invalid inputs.
    """
    y, a, names = check_multilabel(labels, scores_a, label_names, "scores_a")
    _, b, _ = check_multilabel(labels, scores_b, names, "scores_b")
    results = []
    for j, label in enumerate(names):
        n_pos = int(y[:, j].sum())
        if n_pos in (0, y.shape[0]):
            nan = float("nan")
            note = _undefined_note(n_pos, y.shape[0] - n_pos)
            results.append(LabelDelong(label, nan, nan, nan, nan, note))
            continue
        t = M.delong_test(y[:, j], a[:, j], b[:, j])
        results.append(LabelDelong(label, t.auc_a, t.auc_b, t.difference, t.p_value))
    return results


def mean_auc_difference(
    labels,
    scores_a,
    scores_b,
    label_names: Sequence[str] | None = None,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MeanAucDifference:
    """Mean AUC of a minus b, with a paired bootstrap CI and two-sided p.

    Both models' mean AUCs are recomputed on the same replicates (rows
    resampled jointly). The p-value is the shifted-null bootstrap test:
    ``(1 + #{|d* - d| >= |d|}) / (1 + R)`` over the R usable replicates'
    differences ``d*`` (so never below ``1 / (1 + R)``).

    Args:
        labels: ``[N, L]`` 0/1 labels.
        scores_a: ``[N, L]`` scores of model a.
        scores_b: ``[N, L]`` scores of model b on the same rows.
        label_names: L names (default ``label_0`` ...).
        n_bootstrap: replicates (>= 100).
        seed: seed of the resampling.
        confidence: two-sided level of the CI, in (0, 1).

    Returns:
        A :class:`MeanAucDifference`.

    Raises:
        ValueError: as :func:`mean_auc_with_ci`.
    """
    _check_bootstrap(n_bootstrap, confidence)
    y, a, names = check_multilabel(labels, scores_a, label_names, "scores_a")
    _, b, _ = check_multilabel(labels, scores_b, names, "scores_b")
    keep = _averaged(y, names)
    means = _replicate_means(y, [a, b], keep, n_bootstrap, seed)
    if means.shape[0] == 0:
        raise ValueError(
            f"No bootstrap replicate of {n_bootstrap} kept both classes in every "
            "averaged label: too few positives for a CI of the mean AUC."
        )
    ones = np.ones(len(y))
    mean_a = float(_RankIndex(y[:, keep], a[:, keep]).aucs(ones).mean())
    mean_b = float(_RankIndex(y[:, keep], b[:, keep]).aucs(ones).mean())
    diff = mean_a - mean_b
    d_star = means[:, 0] - means[:, 1]
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(d_star, [alpha, 1.0 - alpha])
    extreme = int(np.sum(np.abs(d_star - diff) >= abs(diff) - 1e-12))
    return MeanAucDifference(
        mean_auc_a=mean_a,
        mean_auc_b=mean_b,
        difference=diff,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=(1 + extreme) / (1 + d_star.size),
        labels_averaged=tuple(n for n, k in zip(names, keep) if k),
        labels_excluded=tuple(n for n, k in zip(names, keep) if not k),
        n_replicates_used=int(d_star.size),
    )
