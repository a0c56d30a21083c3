"""benchmarks/fine_detail_report.py: how runs from several sweep files meet
(no training: small hand-made results)."""

import os
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(ROOT, "benchmarks"))

import fine_detail_report  # noqa: E402

LABELS = [0, 0, 0, 1, 1, 1]


def _run(row, lr, eval_auc, test):
    return {
        "row": row, "lr": lr, "eval_auc": eval_auc, "test": test,
        "img_per_s": 1.0, "size": 64,
    }  # fmt: skip


def _file(*runs):
    return {"test_labels": LABELS, "rows": list(runs)}


GOOD = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
POOR = [0.9, 0.2, 0.3, 0.7, 0.1, 0.8]


def test_files_with_disjoint_rates_pool_into_one_grid():
    best, labels = fine_detail_report.best_runs(
        [_file(_run("a", 1e-3, 0.6, POOR)), _file(_run("a", 3e-3, 0.9, GOOD))]
    )
    assert list(best) == ["a"]
    assert best["a"]["lr"] == 3e-3 and best["a"]["grid"] == [1e-3, 3e-3]
    np.testing.assert_array_equal(labels, LABELS)


def test_a_row_run_at_the_same_rate_in_two_files_is_refused():
    results = [_file(_run("a", 1e-3, 0.6, POOR)), _file(_run("a", 1e-3, 0.9, GOOD))]
    with pytest.raises(
        ValueError, match=r"'a' was run at lr 0.001 in result files 1 and 2"
    ):
        fine_detail_report.best_runs(results)


def test_keep_apart_reports_each_files_runs_of_a_shared_row():
    results = [
        _file(_run("a", 1e-3, 0.6, POOR), _run("only_first", 1e-3, 0.5, POOR)),
        _file(_run("a", 1e-3, 0.9, GOOD)),
    ]
    best, _ = fine_detail_report.best_runs(results, ["old", "new"])
    assert sorted(best) == ["a@new", "a@old", "only_first"]
    text = fine_detail_report.table(results, ["old", "new"])
    line = next(ln for ln in text.splitlines() if ln.startswith("| a@new |"))
    assert f"{roc_auc_score(LABELS, GOOD):.4f}" in line
    line = next(ln for ln in text.splitlines() if ln.startswith("| a@old |"))
    assert f"{roc_auc_score(LABELS, POOR):.4f}" in line
