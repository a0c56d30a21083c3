"""benchmarks/chestxray14_table.py: the learning-rate choice on eval, and (slow)
the smoke profile end to end, its figures checked against scikit-learn on the
predictions it wrote."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "chestxray14_table.py")
sys.path.append(os.path.join(ROOT, "benchmarks"))  # the scripts import siblings

import chestxray14_table  # noqa: E402
import chestxray14_table_report  # noqa: E402

FINDINGS = chestxray14_table_report.FINDINGS


def test_best_of_grid_keeps_the_best_eval_mean_auc(monkeypatch):
    """Every rate of the grid runs; the best eval mean AUC is kept, whatever
    the order (the test split is never looked at)."""
    profile = chestxray14_table.dataclasses.replace(
        chestxray14_table.PROFILES["smoke"], lrs=(3e-4, 1e-3, 3e-3)
    )
    eval_auc = {3e-4: 0.61, 1e-3: 0.74, 3e-3: 0.70}
    calls = []

    def fake_run_row(profile, work, row, lr):
        calls.append(lr)
        return {
            "row": row,
            "lr": lr,
            "eval_mean_auc": eval_auc[lr],
            "img_per_s": 1.0,
            "seconds": 1.0,
            "predictions": "x.csv",
        }

    monkeypatch.setattr(chestxray14_table, "run_row", fake_run_row)
    best = chestxray14_table.best_of_grid(profile, "unused", "MorphHR_4S")
    assert calls == [3e-4, 1e-3, 3e-3]
    assert best["lr"] == 1e-3
    assert best["grid"] == {"0.0003": 0.61, "0.001": 0.74, "0.003": 0.7}


def test_protocol_config_is_the_trainers_multilabel_task():
    config = chestxray14_table.protocol_config(chestxray14_table.PROFILES["cpu"], 1e-3)
    assert (config.task, config.balance, config.num_outputs) == (
        "multilabel",
        "class_weight",
        14,
    )
    assert config.learning_rate == config.morph_learning_rate == 1e-3
    assert (config.base_resolution, config.resolution) == (64, 256)
    assert (config.schedule, config.warmup_fraction, config.weight_decay) == (
        "cosine",
        0.05,
        1e-4,
    )


def _matrix(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["image_key"] for r in rows], np.array(
        [[float(r[n]) for n in FINDINGS] for r in rows]
    )


@pytest.mark.slow
def test_smoke_profile_writes_figures_that_match_sklearn(tmp_path):
    from sklearn.metrics import roc_auc_score

    out_md = tmp_path / "results.md"
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--profile",
            "smoke",
            "--work-dir",
            str(tmp_path / "work"),
            "--out",
            str(out_md),
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "step 4/4" in proc.stdout  # the progress lines
    folder = tmp_path / "results"
    names = ["test_labels.csv", "results.json", "roc_grid.png"]
    names += [f"{row}_test.csv" for row in chestxray14_table_report.ROWS]
    for name in names:
        assert (folder / name).stat().st_size > 0, name
    text = out_md.read_text()
    assert "| finding (scale) | positives in test | ResNet18_S |" in text
    assert "0.841" in text and "0.745" in text

    result = json.loads((folder / "results.json").read_text())
    keys, y = _matrix(folder / "test_labels.csv")
    preds = {}
    for row in chestxray14_table_report.ROWS:
        row_keys, preds[row] = _matrix(folder / f"{row}_test.csv")
        assert row_keys == keys
        assert preds[row].shape == (len(keys), 14)
        test = result["test"]["rows"][row]
        sk = []
        for j, entry in enumerate(test["per_label"]):
            assert entry["label"] == FINDINGS[j]
            assert entry["n_positive"] == int(y[:, j].sum())
            if 0 < y[:, j].sum() < len(y):
                sk.append(roc_auc_score(y[:, j], preds[row][:, j]))
                assert entry["auc"] == pytest.approx(sk[-1], abs=1e-9)
                assert entry["ci_low"] <= entry["auc"] <= entry["ci_high"]
            else:
                assert entry["auc"] is None
        if isinstance(test["mean"], dict):
            assert test["mean"]["mean_auc"] == pytest.approx(np.mean(sk), abs=1e-9)
        kept = result["rows"][row]
        assert kept["grid"][f"{kept['lr']:g}"] == max(kept["grid"].values())
    morph_vs_s = result["test"]["comparisons"]["MorphHR_4S - ResNet18_S"]["delong"]
    for j, t in enumerate(morph_vs_s):
        if t["p_value"] is not None and not math.isnan(t["p_value"]):
            a = roc_auc_score(y[:, j], preds["MorphHR_4S"][:, j])
            b = roc_auc_score(y[:, j], preds["ResNet18_S"][:, j])
            assert t["difference"] == pytest.approx(a - b, abs=1e-9)
