"""Probability calibration, calibration error and operating points (numpy only).

A model trained with class weights, sampling or label smoothing gives scores
that rank well (AUC) but are not probabilities: among images scored 0.8, far
fewer or more than 80 % may be positive. :func:`fit_calibration` fits a
monotone map on the eval split, one per output column, that the exported
SavedModel applies after the model (:class:`morphhr_tf.serving.signatures.
ServingModule`), so served probabilities are calibrated:

- ``"platt"`` (Platt scaling): ``sigmoid(a * logit(p) + b)``, a logistic
  regression on the model's logit, fitted by Newton's method on the summed
  log loss plus a tiny ridge ``ridge / 2 * (a**2 + b**2)`` so that separable
  data gives finite parameters. ``p`` is clipped to ``[PLATT_EPS, 1 -
  PLATT_EPS]`` before the logit. The slope ``a`` is kept at or above
  :data:`MIN_SLOPE` (``b`` is then refitted alone): the map stays strictly
  increasing, so calibration never reverses or flattens the model's ranking
  and every AUC is unchanged. (A free fit on an eval split where a finding's
  scores are anti-correlated with its labels gives ``a < 0``: it would flip
  that finding's ranking, and its AUC on the eval split would become
  ``1 - AUC``.)
- ``"isotonic"``: the non-decreasing step function closest to the labels in
  squared error (pool-adjacent-violators), turned into knots ``(x, y)`` that
  are interpolated linearly (flat within a pooled block, linear between
  blocks, flat beyond the first and last score; ``x`` always spans [0, 1]).
  Non-decreasing, not strictly increasing: scores pooled into one block get
  one probability, so the AUC of calibrated scores can differ (ties).

:func:`expected_calibration_error` measures calibration with equal-width
bins; :func:`operating_points` gives the thresholds of four operating points
(sensitivity at specificity 0.90 and 0.95, specificity at sensitivity 0.90
and 0.95) with the rule of :mod:`morphhr_tf.evaluation.metrics`.

Arrays are ``[N]`` (one output) or ``[N, L]`` (one column per output, e.g.
ChestX-ray14's 14 findings); labels are 0/1 of the same shape.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

PLATT = "platt"
ISOTONIC = "isotonic"
METHODS = (PLATT, ISOTONIC)
#: Platt scaling clips probabilities to [PLATT_EPS, 1 - PLATT_EPS] before the
#: logit (float32 model outputs of exactly 0 or 1 would give +-inf).
PLATT_EPS = 1e-7
DEFAULT_RIDGE = 1e-3
#: The smallest Platt slope: calibration keeps the model's ranking.
MIN_SLOPE = 1e-2
#: Targets of :func:`operating_points`.
SPECIFICITY_TARGETS = (0.90, 0.95)
SENSITIVITY_TARGETS = (0.90, 0.95)
_FORMAT_VERSION = 1


def _columns(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(labels, probs)`` as ``[N, L]`` int64 and float64 arrays."""
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or p.ndim not in (1, 2):
        raise ValueError(
            "labels and probs must have the same shape, [N] or [N, L]. "
            f"Received: labels.shape={y.shape}, probs.shape={p.shape}"
        )
    if p.shape[0] == 0:
        raise ValueError(f"labels and probs are empty. Received: shape={p.shape}")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"labels must be 0/1. Received values: {sorted(values)[:10]}")
    bad = ~np.isfinite(p) | (p < 0.0) | (p > 1.0)
    if bad.any():
        raise ValueError(
            f"probs must be finite and in [0, 1]. Received {int(bad.sum())} other "
            f"values (first: {p[bad][0]!r})"
        )
    y = y.astype(np.int64)
    return (y[:, None], p[:, None]) if p.ndim == 1 else (y, p)


def _check_both_classes(y: np.ndarray, column: int) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"column {column} needs positive and negative labels. Received: "
            f"{n_pos} positives and {y.size - n_pos} negatives"
        )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PLATT_EPS, 1.0 - PLATT_EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _fit_platt(y: np.ndarray, p: np.ndarray, ridge: float) -> dict[str, float]:
    """Newton's method with step halving on the ridge-penalized log loss."""
    x = np.stack([_logit(p), np.ones_like(p)], axis=1)

    def loss(w):
        z = x @ w
        return np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * (w @ w)

    w = np.array([1.0, 0.0])
    current = loss(w)
    for _ in range(100):
        q = _sigmoid(x @ w)
        grad = x.T @ (q - y) + ridge * w
        hess = (x * (q * (1.0 - q))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-10:
            candidate = w - scale * step
            value = loss(candidate)
            if value <= current:
                break
            scale *= 0.5
        else:
            break
        w, done = candidate, current - value < 1e-12 * max(1.0, abs(current))
        current = value
        if done:
            break
    if w[0] < MIN_SLOPE:  # keep the ranking: a fixed, b alone
        w = np.array([MIN_SLOPE, _fit_intercept(x[:, 0] * MIN_SLOPE, y, ridge)])
    return {"a": float(w[0]), "b": float(w[1])}


def _fit_intercept(offset: np.ndarray, y: np.ndarray, ridge: float) -> float:
    """The ``b`` minimizing the ridge-penalized log loss of
    ``sigmoid(offset + b)`` (Newton's method on one convex variable)."""
    b = 0.0
    for _ in range(100):
        q = _sigmoid(offset + b)
        grad = np.sum(q - y) + ridge * b
        hess = np.sum(q * (1.0 - q)) + ridge
        step = grad / hess
        b -= step
        if abs(step) < 1e-12:
            break
    return float(b)


def _fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    """Pool-adjacent-violators on the distinct scores; knots spanning [0, 1]."""
    xs, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    # Blocks: [value, weight, first x, last x]; merge while decreasing.
    blocks: list[list[float]] = []
    for x, m, n in zip(xs, means, counts):
        blocks.append([m, float(n), x, x])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            v2, n2, _, hi = blocks.pop()
            v1, n1, lo, _ = blocks.pop()
            blocks.append([(v1 * n1 + v2 * n2) / (n1 + n2), n1 + n2, lo, hi])
    knots_x, knots_y = [], []
    for value, _, lo, hi in blocks:
        knots_x += [lo] if lo == hi else [lo, hi]
        knots_y += [value] if lo == hi else [value, value]
    if knots_x[0] > 0.0:
        knots_x, knots_y = [0.0] + knots_x, [knots_y[0]] + knots_y
    if knots_x[-1] < 1.0:
        knots_x, knots_y = knots_x + [1.0], knots_y + [knots_y[-1]]
    return {"x": [float(v) for v in knots_x], "y": [float(v) for v in knots_y]}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted calibration: one monotone map per output column.

    Args:
        method: ``"platt"`` or ``"isotonic"``.
        params: one dict per column: ``{"a", "b"}`` (Platt:
            ``sigmoid(a * logit(p) + b)``) or ``{"x", "y"}`` (isotonic knots,
            ``x`` strictly increasing from 0 to 1, ``y`` non-decreasing in
            [0, 1]).

    Raises:
        ValueError: for an unknown method or malformed parameters.
    """

    method: str
    params: tuple[dict[str, Any], ...]

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"method must be one of {METHODS}. Received: {self.method!r}"
            )
        object.__setattr__(self, "params", tuple(self.params))
        if not self.params:
            raise ValueError("params must hold one entry per column. Received: ()")
        for i, column in enumerate(self.params):
            _check_params(self.method, column, i)

    @property
    def num_columns(self) -> int:
        """How many output columns the calibration maps (L; 1 for binary)."""
        return len(self.params)

    def apply(self, probs) -> np.ndarray:
        """Calibrated probabilities, float64, of the same shape as ``probs``.

        Args:
            probs: ``[N]`` (one column) or ``[N, L]`` model probabilities.

        Raises:
            ValueError: if the number of columns is not :attr:`num_columns`.
        """
        p = np.asarray(probs, dtype=np.float64)
        columns = 1 if p.ndim == 1 else (p.shape[-1] if p.ndim == 2 else -1)
        if columns != self.num_columns:
            raise ValueError(
                f"probs must be [N, {self.num_columns}]"
                f"{' or [N]' if self.num_columns == 1 else ''} for this "
                f"calibration. Received: shape={p.shape}"
            )
        p2 = p.reshape(p.shape[0], -1)
        out = np.empty_like(p2)
        for i, column in enumerate(self.params):
            if self.method == PLATT:
                out[:, i] = _sigmoid(column["a"] * _logit(p2[:, i]) + column["b"])
            else:
                x = np.clip(p2[:, i], 0.0, 1.0)
                out[:, i] = np.interp(x, column["x"], column["y"])
        return out.reshape(p.shape)

    def to_json(self) -> str:
        """The calibration as a JSON document (``from_json`` reads it back)."""
        return json.dumps(
            {
                "format_version": _FORMAT_VERSION,
                "method": self.method,
                "params": list(self.params),
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Reads :meth:`to_json`'s document.

        Raises:
            ValueError: for a document that is not such a calibration.
        """
        try:
            data = json.loads(text)
            method, params = data["method"], data["params"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"not a calibration JSON document ({err}). Received: {text[:80]!r}"
            ) from err
        return cls(method, tuple(params))


def _check_params(method: str, column: Any, index: int) -> None:
    keys = {"a", "b"} if method == PLATT else {"x", "y"}
    if not isinstance(column, dict) or set(column) != keys:
        raise ValueError(
            f"{method} parameters of column {index} must be a dict with keys "
            f"{sorted(keys)}. Received: {column!r}"[:300]
        )
    if method == PLATT:
        if not all(np.isfinite(float(column[k])) for k in keys):
            raise ValueError(f"Platt parameters must be finite. Received: {column}")
        return
    x, y = np.asarray(column["x"], float), np.asarray(column["y"], float)
    ok = (
        x.ndim == 1
        and x.shape == y.shape
        and x.size >= 2
        and x[0] == 0.0
        and x[-1] == 1.0
        and np.all(np.diff(x) > 0)
        and np.all(np.diff(y) >= 0)
        and np.all((y >= 0) & (y <= 1))
    )
    if not ok:
        raise ValueError(
            f"isotonic knots of column {index} must have x strictly increasing "
            "from 0 to 1 and y non-decreasing in [0, 1], of equal length >= 2. "
            f"Received: x={x.tolist()[:6]}..., y={y.tolist()[:6]}..."
        )


def fit_calibration(
    labels, probs, method: str = PLATT, *, ridge: float = DEFAULT_RIDGE
) -> Calibration:
    """Fits a calibration on held-out (eval split) predictions.

    Args:
        labels: 0/1, ``[N]`` or ``[N, L]``.
        probs: the model's probabilities, same shape, in [0, 1].
        method: ``"platt"`` or ``"isotonic"`` (see the module docstring).
        ridge: Platt's L2 penalty on ``(a, b)`` (added to the summed log
            loss); small, it only keeps separable data finite.

    Returns:
        A :class:`Calibration` with one column per output (1 for ``[N]``).

    Raises:
        ValueError: for an unknown method, a negative ridge, shapes that
            differ, labels other than 0/1, probabilities outside [0, 1], or a
            column with a single class.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: {method!r}")
    if not ridge >= 0.0:
        raise ValueError(f"ridge must be >= 0. Received: ridge={ridge!r}")
    y, p = _columns(labels, probs)
    params = []
    for i in range(p.shape[1]):
        _check_both_classes(y[:, i], i)
        if method == PLATT:
            params.append(_fit_platt(y[:, i].astype(np.float64), p[:, i], ridge))
        else:
            params.append(_fit_isotonic(y[:, i].astype(np.float64), p[:, i]))
    return Calibration(method, tuple(params))


def expected_calibration_error(labels, probs, n_bins: int = 15):
    """Expected calibration error with ``n_bins`` equal-width bins.

    A probability ``p`` falls in bin ``min(floor(p * n_bins), n_bins - 1)``
    (bins ``[k / n, (k + 1) / n)``, the last one closed at 1);
    ``ECE = sum over non-empty bins of (n_bin / N) * |mean(labels in bin) -
    mean(p in bin)|``.

    Args:
        labels: 0/1, ``[N]`` or ``[N, L]``.
        probs: probabilities in [0, 1], same shape.
        n_bins: number of bins, >= 1.

    Returns:
        A float for ``[N]`` inputs; a float64 array ``[L]`` (one ECE per
        column) for ``[N, L]``.

    Raises:
        ValueError: for invalid inputs or ``n_bins``.
    """
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer. Received: {n_bins!r}")
    y, p = _columns(labels, probs)
    bins = np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)
    ece = np.zeros(p.shape[1])
    for i in range(p.shape[1]):
        gap = np.bincount(bins[:, i], weights=y[:, i] - p[:, i], minlength=n_bins)
        ece[i] = np.sum(np.abs(gap)) / p.shape[0]
    return float(ece[0]) if np.ndim(probs) == 1 else ece


def _point(y: np.ndarray, p: np.ndarray, target: float, threshold: float) -> dict:
    if not np.isfinite(threshold):  # "nothing positive": keep the JSON finite
        threshold = float(np.nextafter(p.max(), np.inf))
    return {
        "target": target,
        "threshold": float(threshold),
        "sensitivity": float(np.mean(p[y == 1] >= threshold)),
        "specificity": float(np.mean(p[y == 0] < threshold)),
    }


def operating_points(
    labels,
    probs,
    *,
    label_names: Sequence[str] | None = None,
    specificities: Sequence[float] = SPECIFICITY_TARGETS,
    sensitivities: Sequence[float] = SENSITIVITY_TARGETS,
) -> list[dict[str, Any]]:
    """Operating points of each output, with their thresholds.

    A case is called positive when ``prob >= threshold``. Candidate
    thresholds are the distinct values of ``probs`` in the column (plus one
    above them all). "Sensitivity at specificity s": among the candidates
    whose specificity on these cases is >= s, those with the highest
    sensitivity, and of them the highest threshold (so also the highest
    specificity); "specificity at sensitivity s" likewise with the roles
    swapped. This is :func:`morphhr_tf.evaluation.metrics.
    sensitivity_at_specificity` (and ``specificity_at_sensitivity``), the
    rule of the evaluation report. A threshold above every score (only
    possible for a specificity target no score reaches) is written as the
    next float above the largest score. Pass calibrated probabilities to
    get thresholds on the served (calibrated) probability.

    Args:
        labels: 0/1, ``[N]`` or ``[N, L]``, both classes in every column.
        probs: probabilities in [0, 1], same shape.
        label_names: optional names of the L columns (stored as ``name``).
        specificities: specificity targets in [0, 1].
        sensitivities: sensitivity targets in [0, 1].

    Returns:
        One dict per column: ``{"column", "name", "n_positive",
        "n_negative", "sensitivity_at_specificity": [point, ...],
        "specificity_at_sensitivity": [point, ...]}``, each point
        ``{"target", "threshold", "sensitivity", "specificity"}`` (the
        achieved rates at that threshold). JSON-serializable.

    Raises:
        ValueError: for invalid inputs, a column with a single class, a
            target outside [0, 1], or ``label_names`` of the wrong length.
    """
    # Imported here: the serving graph needs this module, not scikit-learn.
    from morphhr_tf.evaluation import metrics

    y, p = _columns(labels, probs)
    if label_names is not None and len(label_names) != p.shape[1]:
        raise ValueError(
            f"label_names must name the {p.shape[1]} columns. Received: "
            f"{len(label_names)} names"
        )
    out = []
    for i in range(p.shape[1]):
        yi, pi = y[:, i], p[:, i]
        _check_both_classes(yi, i)
        by_spec = [
            _point(yi, pi, float(s), metrics.sensitivity_at_specificity(yi, pi, s)[1])
            for s in specificities
        ]
        by_sens = [
            _point(yi, pi, float(s), metrics.specificity_at_sensitivity(yi, pi, s)[1])
            for s in sensitivities
        ]
        out.append(
            {
                "column": i,
                "name": None if label_names is None else str(label_names[i]),
                "n_positive": int(yi.sum()),
                "n_negative": int(yi.size - yi.sum()),
                "sensitivity_at_specificity": by_spec,
                "specificity_at_sensitivity": by_sens,
            }
        )
    return out


__all__ = [
    "ISOTONIC",
    "METHODS",
    "PLATT",
    "Calibration",
    "expected_calibration_error",
    "fit_calibration",
    "operating_points",
]
