"""The plotted curves are scikit-learn's: ROC points equal ``roc_curve``'s,
calibration points equal ``calibration_curve``'s, and the precision-recall
plot's AP equals ``average_precision_score``, tied scores included. The band,
the operating-point markers and the TFMA ROC plot still render."""

import re

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from morphhr_tf.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Eight cases, 4 positive; 0.4 is tied across the classes. By hand: the ROC
# rises through 0.9, 0.8, 0.6 (all positive), then the tied 0.4 adds one case
# of each class, then only negatives remain.
LABELS = [0, 0, 1, 1, 0, 1, 0, 1]
SCORES = [0.1, 0.4, 0.4, 0.8, 0.35, 0.9, 0.2, 0.6]
FPR = [0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0]
TPR = [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]


@pytest.fixture
def drawn(monkeypatch):
    """The figures ``plots`` saves (closed figures keep their artists)."""
    figures = []
    real = plots._save

    def keep(fig, path):
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _png(path):
    with open(path, "rb") as f:
        data = f.read()
    return data[:8] == PNG_MAGIC and len(data) > 10_000


def _line(ax, label_start):
    return next(x for x in ax.get_lines() if x.get_label().startswith(label_start))


def test_plotted_roc_points_are_sklearns(tmp_path, drawn):
    path = plots.plot_roc(
        {"m": (LABELS, SCORES)}, str(tmp_path / "roc.png"), ci_band=True
    )
    assert _png(path)
    ax = drawn[0].axes[0]
    curve = _line(ax, "m: AUC")
    fpr, tpr, _ = roc_curve(LABELS, SCORES, drop_intermediate=False)
    np.testing.assert_array_equal(curve.get_xdata(), fpr)
    np.testing.assert_array_equal(curve.get_ydata(), tpr)
    np.testing.assert_array_equal(curve.get_xdata(), FPR)
    np.testing.assert_array_equal(curve.get_ydata(), TPR)
    # Operating point at specificity 0.9: fpr <= 0.1 allows sensitivity 0.75.
    (marker,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert marker.get_xdata()[0] == pytest.approx(0.1)
    assert marker.get_ydata()[0] == 0.75
    assert "sens 0.75 @ spec 0.90" in [t.get_text() for t in ax.texts]
    assert len(ax.collections) == 1  # the bootstrap band


def test_plotted_roc_points_are_sklearns_with_many_ties(tmp_path, drawn):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(y * 0.7 + rng.normal(size=300), 1)
    curves = {"a": (y, s), "b": (y, -s)}
    plots.plot_roc(curves, str(tmp_path / "roc2.png"), ci_band=False)
    ax = drawn[0].axes[0]
    for name, (labels, scores) in curves.items():
        curve = _line(ax, f"{name}: AUC")
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
        np.testing.assert_array_equal(curve.get_xdata(), fpr)
        np.testing.assert_array_equal(curve.get_ydata(), tpr)
    assert not ax.collections  # no band asked for
    assert not ax.texts  # overlays: markers without labels


def test_roc_band_brackets_the_curve():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 400)
    s = y * 1.0 + rng.normal(size=400)
    grid, lo, hi = plots.roc_band(y, s, n_bootstrap=200, seed=1)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    mid = np.interp(grid, fpr, tpr)
    inner = (grid > 0.05) & (grid < 0.95)
    assert np.all(lo <= hi)
    assert np.mean((lo[inner] <= mid[inner]) & (mid[inner] <= hi[inner])) > 0.95
    assert lo[0] >= 0 and hi[-1] == 1.0


def test_calibration_points_are_sklearns(tmp_path, drawn):
    # By hand, 4 bins: {0.1, 0.2} all negative, {0.35, 0.4, 0.4} one positive,
    # {0.6} positive, {0.8, 0.9} positive.
    mean_p, observed, counts = plots.calibration_bins(LABELS, SCORES, n_bins=4)
    assert counts.tolist() == [2, 3, 1, 2]
    np.testing.assert_allclose(mean_p, [0.15, 1.15 / 3, 0.6, 0.85])
    np.testing.assert_allclose(observed, [0.0, 1 / 3, 1.0, 1.0])
    rate, prob = calibration_curve(LABELS, SCORES, n_bins=4)
    np.testing.assert_allclose(mean_p, prob, rtol=0, atol=0)
    np.testing.assert_allclose(observed, rate, rtol=0, atol=0)

    # 10 bins: 0.2 and 0.4 lie on inner edges and fall in the lower bin, as in
    # scikit-learn (0.35 and 0.4 share a bin); four bins stay empty.
    mean_p, observed, counts = plots.calibration_bins(LABELS, SCORES, n_bins=10)
    assert counts.tolist() == [1, 1, 0, 3, 0, 1, 0, 1, 1, 0]
    assert np.isnan(mean_p[counts == 0]).all()
    rate, prob = calibration_curve(LABELS, SCORES, n_bins=10)
    np.testing.assert_allclose(prob, [0.1, 0.2, 1.15 / 3, 0.6, 0.8, 0.9])
    np.testing.assert_allclose(rate, [0.0, 0.0, 1 / 3, 1.0, 1.0, 1.0])

    path = plots.plot_calibration({"m": (LABELS, SCORES)}, str(tmp_path / "c.png"))
    assert _png(path)
    points = _line(drawn[0].axes[0], "m")
    np.testing.assert_array_equal(points.get_xdata(), prob)
    np.testing.assert_array_equal(points.get_ydata(), rate)


def test_calibration_points_are_sklearns_on_random_probabilities(tmp_path, drawn):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    p = 1 / (1 + np.exp(-(1.5 * y - 0.75 + rng.normal(size=500))))
    plots.plot_calibration({"m": (y, p)}, str(tmp_path / "c.png"), n_bins=8)
    rate, prob = calibration_curve(y, p, n_bins=8, strategy="uniform")
    points = _line(drawn[0].axes[0], "m")
    np.testing.assert_allclose(points.get_xdata(), prob, rtol=1e-12)
    np.testing.assert_allclose(points.get_ydata(), rate, rtol=1e-12)


def _legend_ap(path_png, curves, tmp_path, monkeypatch):
    labels = []
    real = plots.plt.Axes.legend

    def spy(self, *args, **kwargs):
        labels.extend(h.get_label() for h in self.get_lines())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(plots.plt.Axes, "legend", spy)
    plots.plot_precision_recall(curves, str(tmp_path / path_png))
    return [float(m) for m in re.findall(r"AP (\d\.\d+)", " ".join(labels))]


@pytest.mark.parametrize("labels", [[1, 0, 0, 1], [0, 1, 1, 0]])
def test_ap_with_all_scores_tied_is_order_free(labels, tmp_path, monkeypatch):
    scores = [0.5] * 4
    (ap,) = _legend_ap("pr.png", {"m": (labels, scores)}, tmp_path, monkeypatch)
    assert ap == pytest.approx(average_precision_score(labels, scores), abs=1e-3)
    assert ap == pytest.approx(0.5, abs=1e-3)


def test_ap_matches_sklearn_with_partial_ties(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # many ties
    (ap,) = _legend_ap("pr.png", {"m": (labels, scores)}, tmp_path, monkeypatch)
    assert ap == pytest.approx(average_precision_score(labels, scores), abs=1e-3)
    assert _png(tmp_path / "pr.png")


class _EvalResult:
    """The part of ``tfma.EvalResult`` that the ROC reader uses."""

    def __init__(self, plots_by_slice):
        self.plots = plots_by_slice


def _matrix(tp, fp, tn, fn):
    return {
        "truePositives": tp,
        "falsePositives": fp,
        "trueNegatives": tn,
        "falseNegatives": fn,
    }


def test_roc_from_tfma_confusion_matrices_and_its_plot(tmp_path):
    # 10 positives, 20 negatives; thresholds given in no particular order.
    matrices = [_matrix(6, 2, 18, 4), _matrix(9, 10, 10, 1), _matrix(3, 0, 20, 7)]
    nested = {"": {"": {"confusionMatrixAtThresholds": {"matrices": matrices}}}}
    view = (("view", "CC"),)
    result = _EvalResult([((), {}), ((), nested), (view, nested)])
    fpr, tpr = plots.roc_from_eval_result(result)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.1, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.3, 0.6, 0.9, 1.0])
    cc = plots.roc_from_eval_result(result, view)
    np.testing.assert_array_equal(cc[0], fpr)
    with pytest.raises(ValueError, match="No ConfusionMatrixPlot"):
        plots.roc_from_eval_result(result, (("view", "MLO"),))
    with pytest.raises(ValueError, match="positives and negatives"):
        plots.roc_from_confusion_matrices([_matrix(0, 1, 1, 0)])
    with pytest.raises(ValueError, match="at least one"):
        plots.roc_from_confusion_matrices([])

    path = plots.plot_roc_points(
        {"overall": (fpr, tpr), "CC": cc}, str(tmp_path / "tfma_roc.png")
    )
    assert _png(path)


def test_roc_grid_panels_are_sklearns_curves(tmp_path, drawn):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (60, 3))
    y[:, 2] = 0  # a label with a single class: an empty panel
    s = np.round(y + rng.normal(size=y.shape), 1)
    panels = {
        name: {"a": (y[:, j], s[:, j]), "b": (y[:, j], -s[:, j])}
        for j, name in enumerate(["Effusion", "Mass", "Hernia"])
    }
    path = plots.plot_roc_grid(panels, str(tmp_path / "grid.png"), columns=2)
    assert _png(path)
    axes = drawn[0].axes
    assert len(axes) == 4 and not axes[3].axison  # 2 x 2, the last unused
    for j, ax in enumerate(axes[:2]):
        assert ax.get_title() == f"{list(panels)[j]} ({y[:, j].sum()} of 60)"
        curve = _line(ax, "a: ")
        fpr, tpr, _ = roc_curve(y[:, j], s[:, j], drop_intermediate=False)
        np.testing.assert_array_equal(curve.get_xdata(), fpr)
        np.testing.assert_array_equal(curve.get_ydata(), tpr)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[0] == f"a: {roc_auc_score(y[:, j], s[:, j]):.3f}"
    assert "single class" in axes[2].texts[0].get_text()
    with pytest.raises(ValueError, match="every label needs at least one model"):
        plots.plot_roc_grid({"Mass": {}}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="columns must be >= 1. Received: 0"):
        plots.plot_roc_grid(panels, str(tmp_path / "x.png"), columns=0)
