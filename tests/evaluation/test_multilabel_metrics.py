"""Multi-label AUC statistics against scikit-learn's ``roc_auc_score`` per
column and against the binary functions of ``metrics`` on one column."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from morphhr_tf.evaluation import metrics as M
from morphhr_tf.evaluation import multilabel as ML

NAMES = ("A", "B", "C", "D")


def _data(n=150, seed=0, strength=1.2):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=(n, 4)) < [0.3, 0.2, 0.5, 0.1]).astype(int)
    # Rounded scores: ties within and across the classes.
    s = np.round(strength * y + rng.normal(size=(n, 4)), 1)
    return y, s


def test_per_label_auc_is_sklearn_per_column_and_binary_on_one_column():
    y, s = _data()
    results = ML.per_label_auc(y, s, NAMES, n_bootstrap=300, seed=3)
    for j, r in enumerate(results):
        assert r.label == NAMES[j]
        assert r.auc == pytest.approx(roc_auc_score(y[:, j], s[:, j]), abs=1e-12)
        binary = M.auc_with_ci(y[:, j], s[:, j], n_bootstrap=300, seed=3)
        assert (r.ci_low, r.ci_high) == (binary.ci_low, binary.ci_high)
        assert (r.n_positive, r.n_negative) == (binary.n_positive, binary.n_negative)


def test_per_label_delong_ci_brackets_the_auc():
    y, s = _data()
    for r in ML.per_label_auc(y, s, NAMES, ci_method="delong"):
        aucs, cov = M.delong_covariance(
            y[:, NAMES.index(r.label)], s[:, NAMES.index(r.label)]
        )
        assert r.auc == pytest.approx(aucs[0])
        half = 1.959963984540054 * math.sqrt(cov[0, 0])
        assert r.ci_low == pytest.approx(max(aucs[0] - half, 0.0))
        assert r.ci_high == pytest.approx(min(aucs[0] + half, 1.0))


def test_single_class_label_is_nan_with_a_note_and_left_out_of_the_mean():
    y, s = _data()
    y[:, 3] = 0  # no positive of D
    per = ML.per_label_auc(y, s, NAMES, n_bootstrap=200)
    assert math.isnan(per[3].auc) and not per[3].defined
    assert "single class: 0 positives, 150 negatives" in per[3].note
    assert str(per[3]).startswith("n/a (single class")
    mean = ML.mean_auc_with_ci(y, s, NAMES, n_bootstrap=200)
    assert mean.labels_averaged == ("A", "B", "C")
    assert mean.labels_excluded == ("D",)
    expected = np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(3)])
    assert mean.mean_auc == pytest.approx(expected, abs=1e-12)


def test_weighted_aucs_equal_sklearn_on_the_resampled_rows():
    y, s = _data(n=80, seed=4)
    index = ML._RankIndex(y, s)
    rng = np.random.default_rng(9)
    for _ in range(5):
        rows = rng.integers(0, 80, 80)
        weights = np.bincount(rows, minlength=80).astype(float)
        got = index.aucs(weights)
        for j in range(4):
            if len(set(y[rows, j])) < 2:
                assert math.isnan(got[j])
            else:
                want = roc_auc_score(y[rows, j], s[rows, j])
                assert got[j] == pytest.approx(want, abs=1e-12)


def test_mean_auc_ci_is_the_quantile_of_row_bootstrap_means():
    y, s = _data(n=120, seed=1)
    n_boot = 100
    r = ML.mean_auc_with_ci(y, s, NAMES, n_bootstrap=n_boot, seed=7)
    rng = np.random.default_rng(7)  # the same stream: one draw of N rows each
    means = []
    for _ in range(n_boot):
        rows = rng.integers(0, 120, 120)
        if all(0 < y[rows, j].sum() < 120 for j in range(4)):
            means.append(
                np.mean([roc_auc_score(y[rows, j], s[rows, j]) for j in range(4)])
            )
    assert r.n_replicates_used == len(means)
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert (r.ci_low, r.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert r.ci_low < r.mean_auc < r.ci_high


def test_mean_auc_of_one_label_is_its_auc():
    y, s = _data()
    r = ML.mean_auc_with_ci(y[:, :1], s[:, :1], n_bootstrap=100)
    assert r.mean_auc == pytest.approx(M.auc(y[:, 0], s[:, 0]), abs=1e-12)
    assert r.labels_averaged == ("label_0",)


def test_delong_per_label_is_the_binary_test_per_column():
    y, a = _data(seed=2, strength=2.0)
    _, b = _data(seed=3, strength=0.5)
    y[:, 1] = 1  # B: no negative
    tests = ML.delong_per_label(y, a, b, NAMES)
    for j, t in enumerate(tests):
        if j == 1:
            assert math.isnan(t.p_value) and "single class" in t.note
            continue
        ref = M.delong_test(y[:, j], a[:, j], b[:, j])
        assert (t.auc_a, t.auc_b) == (ref.auc_a, ref.auc_b)
        assert t.p_value == ref.p_value and t.difference == ref.difference


def test_mean_auc_difference_paired_bootstrap():
    rng = np.random.default_rng(5)
    y = (rng.uniform(size=(200, 3)) < 0.3).astype(int)
    strong = 2.0 * y + rng.normal(size=y.shape)
    weak = 0.3 * y + rng.normal(size=y.shape)
    d = ML.mean_auc_difference(y, strong, weak, n_bootstrap=300)
    want_a = np.mean([roc_auc_score(y[:, j], strong[:, j]) for j in range(3)])
    want_b = np.mean([roc_auc_score(y[:, j], weak[:, j]) for j in range(3)])
    assert d.mean_auc_a == pytest.approx(want_a) and d.mean_auc_b == pytest.approx(
        want_b
    )
    assert d.difference == pytest.approx(want_a - want_b)
    assert 0 < d.ci_low < d.difference < d.ci_high
    assert d.p_value == pytest.approx(1 / (1 + d.n_replicates_used))
    same = ML.mean_auc_difference(y, strong, strong, n_bootstrap=100)
    assert same.difference == 0 and same.p_value == 1.0
    assert same.ci_low == same.ci_high == 0


@pytest.mark.parametrize(
    "labels, scores, match",
    [
        ([[0, 1], [1, 0]], [[0.1, 0.2]], "same shape"),
        ([0, 1], [0.1, 0.2], r"\[N, L\]"),
        ([[0, 2], [1, 0]], [[0.1, 0.2], [0.3, 0.4]], "0/1"),
        ([[0, 1], [1, 0]], [[0.1, np.nan], [0.3, 0.4]], "row 0, column 1"),
    ],
)
def test_invalid_inputs_name_what_was_received(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        ML.per_label_auc(labels, scores)


def test_invalid_arguments():
    y, s = _data()
    with pytest.raises(ValueError, match="label_names must name the 4 columns"):
        ML.per_label_auc(y, s, ["A", "B"])
    with pytest.raises(ValueError, match="ci_method"):
        ML.per_label_auc(y, s, ci_method="exact")
    with pytest.raises(ValueError, match="n_bootstrap"):
        ML.mean_auc_with_ci(y, s, n_bootstrap=10)
    with pytest.raises(ValueError, match="needs a label with both classes"):
        ML.mean_auc_with_ci(np.zeros_like(y), s, n_bootstrap=100)
