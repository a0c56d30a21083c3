"""The model card: AUCs with CIs against scikit-learn, strict JSON, and the
Markdown page."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from morphhr_tf.evaluation.model_card import (
    MIN_CLASS_COUNT,
    build_model_card,
    render_markdown,
)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
    return y, p


def test_binary_card_has_overall_and_slice_aucs_with_cis():
    y, p = _data()
    views = np.where(np.arange(len(y)) % 2, "CC", "MLO")
    tiny = np.array(["R"] * (len(y) - 3) + ["L"] * 3)
    card = build_model_card(
        training_summary={"auc_final": float("nan"), "train_seconds": 3.0},
        config={"model": "morphhr", "resolution": 256},
        eval_labels=y,
        eval_probs=p,
        slices={"view": views, "laterality": tiny},
        calibration={"method": "platt", "ece_before": 0.1, "ece_after": 0.02},
        code_version="morphhr_tf 0.1.0 (abc)",
    )
    perf = card["performance_eval_split"]
    assert perf["overall"]["auc"] == pytest.approx(roc_auc_score(y, p))
    low, high = perf["overall"]["ci"]
    assert low < perf["overall"]["auc"] < high
    rows = {r["slice"]: r for r in perf["slices"]}
    mask = views == "CC"
    assert rows["view=CC"]["auc"] == pytest.approx(roc_auc_score(y[mask], p[mask]))
    assert rows["laterality=L"]["auc"] is None  # 3 images < MIN_CLASS_COUNT
    assert MIN_CLASS_COUNT > 3
    assert card["data"]["auc_final"] is None  # NaN -> null: strict JSON
    json.dumps(card, allow_nan=False)
    page = render_markdown(card)
    assert "| view=CC |" in page and "n/a (too few cases)" in page
    assert "0.1000 before, 0.0200 after" in page
    assert "Not a medical device" in page


def test_multilabel_card_has_an_auc_per_label_and_the_mean():
    ys, ps = zip(*(_data(seed=s) for s in range(3)))
    y, p = np.stack(ys, 1), np.stack(ps, 1)
    y[:, 2] = 0  # a label without positives: no AUC, left out of the mean
    card = build_model_card(
        training_summary={},
        config={"model": "resnet18", "resolution": 64},
        eval_labels=y,
        eval_probs=p,
        label_names=["A", "B", "C"],
    )
    perf = card["performance_eval_split"]
    aucs = [r["auc"] for r in perf["per_label"]]
    assert aucs[0] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert aucs[2] is None
    assert perf["labels_averaged"] == 2
    assert perf["mean_auc"] == pytest.approx(np.mean(aucs[:2]))
    assert "Mean AUC over 2 labels" in render_markdown(card)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        build_model_card(
            training_summary={},
            config={},
            eval_labels=np.zeros(3),
            eval_probs=np.zeros((3, 2)),
        )


def test_levels_are_carried_and_rendered():
    from morphhr_tf.evaluation.model_card import level_row

    y, p = _data()
    levels = {"image": level_row(y, p), "breast": level_row(y[:100], p[:100])}
    card = build_model_card(
        training_summary={},
        config={"model": "morphhr", "resolution": 64},
        eval_labels=y,
        eval_probs=p,
        levels={**levels, "images_left_out": 2},
    )
    assert card["performance_eval_split"]["levels"]["image"]["auc"] == pytest.approx(
        roc_auc_score(y, p)
    )
    page = render_markdown(card)
    assert "| breast | " in page and "without a patient key or laterality: 2" in page
