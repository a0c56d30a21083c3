"""benchmarks/paper_table.py's protocol, through the package's training helpers,
and its report's DeLong comparisons (no training, no data set)."""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(ROOT, "benchmarks"))  # paper_table imports its sibling

import paper_table  # noqa: E402
import paper_table_report  # noqa: E402

SMOKE = paper_table.PROFILES["smoke"]


def test_protocol_config_pins_schedule_weight_decay_and_sampling():
    config = paper_table.protocol_config(SMOKE, 3e-3)
    assert (config.schedule, config.warmup_fraction, config.weight_decay) == (
        "cosine",
        0.05,
        1e-4,
    )
    assert (config.balance, config.augment) == ("sample", True)
    assert config.learning_rate == 3e-3
    assert (config.batch_size, config.seed) == (SMOKE.batch_size, SMOKE.seed)


def test_row_models_get_the_protocols_learning_rates(tmp_path):
    """ResNet18 rows: every layer at lr. MorphHR rows: the new layers at lr,
    the trunk at lr * trunk_lr_multiplier; cosine with 5% warm-up, wd 1e-4."""
    import keras

    from morphhr_tf.models import resnet18
    from morphhr_tf.models.morphhr import added_layers
    from morphhr_tf.training.schedule import LayerwiseAdamW
    from morphhr_tf.training.stages import compile_layerwise

    size = min(SMOKE.sizes)
    resnet18((size, size, 1), width=SMOKE.width).save(tmp_path / "base.keras")
    model, kwargs = paper_table.row_model(SMOKE, str(tmp_path), "resnet18", size)
    assert kwargs == {"lr_multipliers": {}, "default_multiplier": 1.0}
    model, kwargs = paper_table.row_model(SMOKE, str(tmp_path), "morphhr", 2 * size)
    front = added_layers(model)
    assert front and kwargs["lr_multipliers"] == dict.fromkeys(front, 1.0)
    assert kwargs["default_multiplier"] == SMOKE.trunk_lr_multiplier

    compile_layerwise(model, paper_table.protocol_config(SMOKE, 1e-3), 100, **kwargs)
    opt = model.optimizer
    assert isinstance(opt, LayerwiseAdamW)
    assert opt.weight_decay == pytest.approx(1e-4)
    schedule = opt._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.warmup_steps == 5 and schedule.decay_steps == 95
    assert schedule.warmup_target == pytest.approx(1e-3)
    trunk = next(v for v in model.trainable_variables if v.path.startswith("conv1"))
    assert opt.multiplier_for(trunk) == SMOKE.trunk_lr_multiplier


def _preds(seed, n=40):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    return {
        "labels": labels,
        "scores": labels + rng.normal(0, 1.0, n),
        "keys": [str(i) for i in range(n)],
    }


def test_table_compares_morphhr_with_resnet18_at_the_same_size():
    rows, preds = [], {}
    for i, (kind, size) in enumerate(
        [("resnet18", 32), ("resnet18", 64), ("morphhr", 32), ("morphhr", 64)]
    ):
        preds[(kind, size)] = _preds(i)
        rows.append(
            {"kind": kind, "size": size, "lr": 1e-3, "grid": {"0.001": 0.5},
             "img_per_s": 10.0, "peak_mb": 100.0}
        )  # fmt: skip
    lines = paper_table_report.table_lines(rows, preds)
    assert lines[:2] == paper_table_report.TABLE_HEADER
    cells = [line.split(" | ")[4] for line in lines[2:]]
    assert cells[0] == "-"
    assert cells[1].endswith(" vs ResNet18_S32")
    assert "vs" not in cells[2] and "vs" not in cells[3]
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| ResNet18_S32",
        "| ResNet18_S64",
        "| MorphHR-ResNet18_S32",
        "| MorphHR-ResNet18_S64",
    ]
