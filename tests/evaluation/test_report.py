"""The evaluation report CLI and its plots, on prediction CSVs of two models."""

import csv
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from morphhr_tf.evaluation import plots, report


def _write(path, keys, labels, probs):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_key", "label", "probability"])
        w.writerows(zip(keys, labels, probs))
    return str(path)


@pytest.fixture
def two_models(tmp_path):
    rng = np.random.default_rng(0)
    n = 240
    y = rng.integers(0, 2, n)
    strong = 1 / (1 + np.exp(-(2.0 * y - 1 + rng.normal(size=n))))
    weak = 1 / (1 + np.exp(-(0.4 * y + rng.normal(size=n))))
    keys = [f"img{i:04d}" for i in range(n)]
    a = _write(tmp_path / "strong.csv", keys, y, strong)
    # The second file lists the same cases in another order: pairing by key.
    perm = rng.permutation(n)
    b = _write(tmp_path / "weak.csv", [keys[i] for i in perm], y[perm], weak[perm])
    return a, b, y, strong, weak


def test_report_table_and_plots(tmp_path, two_models):
    a, b, y, strong, weak = two_models
    out = tmp_path / "report"
    assert report.main(["--predictions", a, b, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert f"{roc_auc_score(y, strong):.4f}" in text
    assert f"{roc_auc_score(y, weak):.4f}" in text
    weak_row = next(line for line in text.splitlines() if line.startswith("| weak"))
    p_value = float(weak_row.split("|")[7].split()[0])
    assert p_value < 0.01  # strong vs weak on 240 cases is clearly different
    for png in ("roc.png", "pr.png", "calibration.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_report_refuses_mismatched_cases(tmp_path, two_models):
    a, _, y, strong, _ = two_models
    other = _write(tmp_path / "other.csv", ["zzz"] * 3, [0, 1, 0], [0.1, 0.2, 0.3])
    assert report.main(["--predictions", a, other, "--out", str(tmp_path / "r")]) == 2
    with pytest.raises(ValueError, match="missing"):
        report.build_report([a, other], str(tmp_path / "r"))


def test_report_names_missing_columns(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("path,prob\nx.dcm,0.5\n")
    with pytest.raises(ValueError, match="Received columns"):
        report.read_predictions(str(p))


def test_calibration_bins_against_manual_count():
    labels = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.05, 0.15, 0.12, 0.95, 0.91, 0.55])
    mean_p, observed, counts = plots.calibration_bins(labels, scores, n_bins=10)
    assert counts.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert observed[1] == pytest.approx(0.5)
    assert mean_p[9] == pytest.approx(0.93)
    with pytest.raises(ValueError, match="probabilities"):
        plots.calibration_bins(labels, scores * 3, n_bins=10)


def test_single_model_plots_exist(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    s = np.clip(y * 0.3 + rng.uniform(size=80) * 0.7, 0, 1)
    path = plots.plot_roc({"m": (y, s)}, str(tmp_path / "one.png"))
    assert os.path.getsize(path) > 10_000
