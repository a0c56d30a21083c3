"""The precision-recall plot's AP equals scikit-learn's, tied scores included."""

import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from morphhr_tf.evaluation import plots


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
