"""Calibration fits, ECE and operating points against numpy references."""

import json

import numpy as np
import pytest

from morphhr_tf.evaluation.calibration import (
    Calibration,
    expected_calibration_error,
    fit_calibration,
    operating_points,
)


def _overconfident(n, seed):
    """A well-separated Gaussian problem scored by an overconfident model.

    z = +-1 + N(0, 1), so the true P(y=1 | z) = sigmoid(2 z); the model says
    sigmoid(6 z), far too sure of itself.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = np.where(y == 1, 1.0, -1.0) + rng.normal(size=n)
    return y, 1.0 / (1.0 + np.exp(-6.0 * z))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_the_ece_on_a_held_out_split(method):
    y_fit, p_fit = _overconfident(4000, seed=0)
    y_test, p_test = _overconfident(4000, seed=1)
    cal = fit_calibration(y_fit, p_fit, method)
    before = expected_calibration_error(y_test, p_test)
    after = expected_calibration_error(y_test, cal.apply(p_test))
    assert before > 0.08
    assert after < 0.03 and after < before / 3
    if method == "platt":  # the true map is sigmoid(2z) = sigmoid(logit(p) / 3)
        np.testing.assert_allclose(cal.params[0]["a"], 1 / 3, atol=0.04)
        assert abs(cal.params[0]["b"]) < 0.1


def test_isotonic_is_monotone_and_fits_the_pooled_means():
    rng = np.random.default_rng(3)
    p = rng.random(500)
    y = (rng.random(500) < p**2).astype(int)
    cal = fit_calibration(y, p, "isotonic")
    grid = np.linspace(0, 1, 2001)
    out = cal.apply(grid)
    assert np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 1
    # At the data, the fit is the PAV solution: non-decreasing, and each
    # pooled block's value is the mean of its labels.
    fitted = cal.apply(p)
    order = np.argsort(p)
    assert np.all(np.diff(fitted[order]) >= 0)
    for value in np.unique(fitted):
        block = fitted == value
        np.testing.assert_allclose(y[block].mean(), value, atol=1e-12)
    # Squared error no worse than any other monotone candidate tried.
    sse = np.sum((fitted - y) ** 2)
    assert sse <= np.sum((np.clip(p, 0, 1) - y) ** 2)
    assert sse <= np.sum((p**2 - y) ** 2)


def test_platt_stays_finite_on_separable_data():
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    cal = fit_calibration(y, p, "platt")
    a, b = cal.params[0]["a"], cal.params[0]["b"]
    assert np.isfinite(a) and np.isfinite(b) and a > 1
    out = cal.apply(p)
    assert np.all(out[:3] < 0.5) and np.all(out[3:] > 0.5)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_multi_column_fit_json_round_trip(method):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (300, 3))
    p = np.clip(0.5 * y + 0.5 * rng.random((300, 3)), 0, 1)
    p[:5] = [0.0, 1.0, 0.5]  # extremes are allowed
    cal = fit_calibration(y, p, method)
    assert cal.num_columns == 3
    back = Calibration.from_json(cal.to_json())
    assert back == cal
    np.testing.assert_array_equal(back.apply(p), cal.apply(p))
    for i in range(3):  # each column is its own one-column fit
        single = fit_calibration(y[:, i], p[:, i], method)
        np.testing.assert_allclose(cal.apply(p)[:, i], single.apply(p[:, i]))
    assert json.loads(cal.to_json())["method"] == method


def test_invalid_inputs_are_refused_with_what_was_received():
    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(ValueError, match="method must be one of .*'logistic'"):
        fit_calibration(y, p, "logistic")
    with pytest.raises(ValueError, match=r"same shape.*\(4,\).*\(3,\)"):
        fit_calibration(y, p[:3])
    with pytest.raises(ValueError, match=r"labels must be 0/1.*\[0, 2\]"):
        fit_calibration(np.array([0, 2, 0, 2]), p)
    with pytest.raises(ValueError, match="finite and in \\[0, 1\\].*1.5"):
        fit_calibration(y, np.array([0.1, 1.5, 0.2, 0.3]))
    with pytest.raises(ValueError, match="column 1 needs positive and negative.*0 pos"):
        fit_calibration(np.array([[0, 0], [1, 0]]), np.array([[0.1, 0.2], [0.9, 0.3]]))
    cal = fit_calibration(y, p)
    with pytest.raises(ValueError, match=r"\[N, 1\] or \[N\].*\(4, 2\)"):
        cal.apply(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="not a calibration JSON"):
        Calibration.from_json('{"params": []}')
    with pytest.raises(ValueError, match="x strictly increasing"):
        Calibration("isotonic", ({"x": [0.0, 0.5], "y": [0.1, 0.2]},))
    with pytest.raises(ValueError, match="n_bins must be a positive integer.*0"):
        expected_calibration_error(y, p, n_bins=0)


def _ece_reference(y, p, n_bins):
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        inside = (p >= lo) & ((p < hi) if k < n_bins - 1 else (p <= hi))
        if inside.any():
            total += inside.sum() / p.size * abs(y[inside].mean() - p[inside].mean())
    return total


def test_ece_matches_a_bin_by_bin_reference():
    rng = np.random.default_rng(5)
    p = rng.random((400, 2))
    p[0] = [0.0, 1.0]
    y = (rng.random((400, 2)) < p**1.5).astype(int)
    for n_bins in (1, 10, 15):
        ece = expected_calibration_error(y, p, n_bins=n_bins)
        assert ece.shape == (2,)
        for i in range(2):
            np.testing.assert_allclose(
                ece[i], _ece_reference(y[:, i], p[:, i], n_bins), atol=1e-12
            )
    # A perfectly calibrated bin-constant score has ECE 0.
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.0


def _brute_force(y, p, target, by):
    """Every candidate threshold, scanned; the definition in plain loops."""
    candidates = sorted(set(p.tolist())) + [np.inf]
    best = None
    for t in candidates:
        sens = np.mean(p[y == 1] >= t)
        spec = np.mean(p[y == 0] < t)
        rate, other = (spec, sens) if by == "spec" else (sens, spec)
        if rate < target:
            continue
        key = (other, t)  # best other rate, then highest threshold
        if best is None or key > best[0]:
            best = (key, t, sens, spec)
    _, t, sens, spec = best
    return (np.nextafter(p.max(), np.inf) if np.isinf(t) else t), sens, spec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operating_points_match_a_brute_force_scan(seed):
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.integers(0, 2, (n, 2))
    y[:2] = [[0, 0], [1, 1]]
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random((n, 2)), 0, 1), 2)  # ties
    points = operating_points(y, p, label_names=["Mass", "Nodule"])
    assert [c["name"] for c in points] == ["Mass", "Nodule"]
    json.dumps(points, allow_nan=False)
    for i, column in enumerate(points):
        assert column["n_positive"] == int(y[:, i].sum())
        for key, by in [
            ("sensitivity_at_specificity", "spec"),
            ("specificity_at_sensitivity", "sens"),
        ]:
            assert [pt["target"] for pt in column[key]] == [0.90, 0.95]
            for point in column[key]:
                t, sens, spec = _brute_force(y[:, i], p[:, i], point["target"], by)
                assert point["threshold"] == t
                assert point["sensitivity"] == pytest.approx(sens, abs=1e-12)
                assert point["specificity"] == pytest.approx(spec, abs=1e-12)
                achieved = spec if by == "spec" else sens
                assert achieved >= point["target"]


def test_an_unreachable_specificity_gives_a_finite_threshold_above_all_scores():
    y = np.array([0, 1, 1, 1, 0])
    p = np.array([1.0, 0.9, 0.8, 0.7, 0.2])  # the top score is a negative
    (column,) = operating_points(y, p, specificities=[0.9])
    (point,) = column["sensitivity_at_specificity"]
    assert point["threshold"] > 1.0 and np.isfinite(point["threshold"])
    assert point["sensitivity"] == 0.0 and point["specificity"] == 1.0


def test_platt_keeps_the_ranking_of_anti_correlated_scores():
    from sklearn.metrics import roc_auc_score

    from morphhr_tf.evaluation.calibration import MIN_SLOPE

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=400) - 1.5 * (y - 0.5))))
    calibration = fit_calibration(y, p, "platt")
    (params,) = calibration.params
    assert params["a"] == MIN_SLOPE  # a free fit would give a < 0
    served = calibration.apply(p)
    assert roc_auc_score(y, served) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    # b is the best intercept for that slope: the mean prediction matches.
    assert served.mean() == pytest.approx(y.mean(), abs=0.01)
