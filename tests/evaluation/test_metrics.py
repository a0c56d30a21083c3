"""AUC, its bootstrap CI, DeLong's test and operating points, checked against
scikit-learn and an independent numpy implementation."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from morphhr_tf.evaluation import metrics as M


def _scores(n, seed, shift=0.8, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = y * shift + rng.normal(size=n)
    if ties:
        s = np.round(s, 1)  # many tied scores
    return y, s


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_sklearn(seed, ties):
    y, s = _scores(257, seed, ties=ties)
    assert abs(M.auc(y, s) - roc_auc_score(y, s)) < 1e-12
    r = M.auc_with_ci(y, s, n_bootstrap=500, seed=seed)
    assert abs(r.auc - roc_auc_score(y, s)) < 1e-12
    assert r.ci_low < r.auc < r.ci_high
    assert (r.n_positive, r.n_negative) == (int(y.sum()), int((1 - y).sum()))


def test_bootstrap_ci_is_deterministic_and_narrows_with_more_cases():
    y, s = _scores(200, 3)
    a = M.auc_with_ci(y, s, n_bootstrap=400, seed=7)
    b = M.auc_with_ci(y, s, n_bootstrap=400, seed=7)
    assert a == b
    yl, sl = _scores(3200, 3)
    big = M.auc_with_ci(yl, sl, n_bootstrap=400, seed=7)
    assert (big.ci_high - big.ci_low) < 0.5 * (a.ci_high - a.ci_low)


def _structural_components_reference(y, scores_a, scores_b):
    """DeLong (1988) written out: psi over every positive/negative pair."""
    out = []
    for s in (scores_a, scores_b):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        out.append((psi.mean(axis=1), psi.mean(axis=0), psi.mean()))
    (v10a, v01a, auca), (v10b, v01b, aucb) = out
    m, n = v10a.size, v01a.size
    s10 = np.cov(np.stack([v10a, v10b]))
    s01 = np.cov(np.stack([v01a, v01b]))
    cov = s10 / m + s01 / n
    return np.array([auca, aucb]), cov


@pytest.mark.parametrize("ties", [False, True])
def test_delong_covariance_matches_structural_components_formula(ties):
    y, sa = _scores(301, 11, ties=ties)
    rng = np.random.default_rng(12)
    sb = sa * 0.5 + rng.normal(size=sa.size)  # correlated second model
    if ties:
        sb = np.round(sb, 1)
    aucs, cov = M.delong_covariance(y, sa, sb)
    ref_aucs, ref_cov = _structural_components_reference(y, sa, sb)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-9, atol=1e-15)

    r = M.delong_test(y, sa, sb)
    var = ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1]
    assert abs(r.std_error - np.sqrt(var)) < 1e-12
    assert abs(r.difference - (ref_aucs[0] - ref_aucs[1])) < 1e-12


def test_delong_variance_agrees_with_bootstrap_variance_on_a_large_sample():
    y, s = _scores(4000, 21)
    rng = np.random.default_rng(22)
    _, cov = M.delong_covariance(y, s)
    boot = []
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    for _ in range(400):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        boot.append(roc_auc_score(y[idx], s[idx]))
    ratio = np.var(boot, ddof=1) / cov[0, 0]
    assert 0.9 < ratio < 1.1, ratio


def test_delong_p_value_behaves():
    y, sa = _scores(400, 31, shift=1.5)
    rng = np.random.default_rng(32)
    weak = y * 0.2 + rng.normal(size=y.size)
    strong_vs_weak = M.delong_test(y, sa, weak)
    assert strong_vs_weak.difference > 0
    assert strong_vs_weak.p_value < 1e-3
    same = M.delong_test(y, sa, sa)
    assert same.difference == 0.0 and same.p_value == 1.0
    # Swapping the models flips the sign and keeps the p-value.
    swapped = M.delong_test(y, weak, sa)
    assert swapped.difference == pytest.approx(-strong_vs_weak.difference)
    assert swapped.p_value == pytest.approx(strong_vs_weak.p_value)


def _brute_force_operating_points(y, s):
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return 1 - fpr, tpr, thr


@pytest.mark.parametrize("target", [0.0, 0.5, 0.8, 0.9, 0.95, 1.0])
def test_operating_points_match_brute_force(target):
    y, s = _scores(333, 41, ties=True)
    spec, sens, _ = _brute_force_operating_points(y, s)
    got_sens, thr = M.sensitivity_at_specificity(y, s, target)
    assert got_sens == pytest.approx(sens[spec >= target].max())
    pred = s >= thr
    assert np.mean(~pred[y == 0]) >= target
    assert np.mean(pred[y == 1]) == pytest.approx(got_sens)

    got_spec, thr = M.specificity_at_sensitivity(y, s, target)
    assert got_spec == pytest.approx(spec[sens >= target].max())
    pred = s >= thr
    assert np.mean(pred[y == 1]) >= target


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "single class"),
        ([0, 0], [0.1, 0.2], "single class"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN/Inf"),
        ([0, 1, 1], [0.1, np.inf, 0.3], "NaN/Inf"),
        ([0, 1], [0.1, 0.2, 0.3], "same length"),
        ([], [], "no cases"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1"),
    ],
)
def test_degenerate_inputs_raise_clear_errors(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        M.auc_with_ci(labels, scores, n_bootstrap=100)
    with pytest.raises(ValueError, match=message):
        M.delong_test(labels, scores, scores)
    with pytest.raises(ValueError, match=message):
        M.sensitivity_at_specificity(labels, scores, 0.9)


def test_bad_arguments_are_echoed():
    with pytest.raises(ValueError, match="n_bootstrap.*Received: 5"):
        M.auc_with_ci([0, 1], [0.1, 0.2], n_bootstrap=5)
    with pytest.raises(ValueError, match="specificity=1.5"):
        M.sensitivity_at_specificity([0, 1], [0.1, 0.2], 1.5)
