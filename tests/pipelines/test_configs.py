import dataclasses
import json

import pytest

from morphhr_tf.training.config import TrainingConfig
from pipelines import configs

# The cpu demo's custom_config before Profile held a TrainingConfig: the keys
# it set (the rest were TrainingConfig's defaults).
CPU_DEMO_KEYS = {
    "model": "morphhr",
    "base_resolution": 128,
    "resolution": 256,
    "width": 16,
    "front_channels": 8,
    "base_steps": 600,
    "epochs": 3,
    "batch_size": 16,
    "learning_rate": 2e-3,
    "morph_learning_rate": 1e-3,
}


@pytest.mark.parametrize("name", sorted(configs.PROFILES))
def test_custom_config_round_trips_for_every_profile(name):
    training = configs.PROFILES[name].training
    for model in ("morphhr", "resnet18"):
        config = dataclasses.replace(training, model=model)
        custom_config = json.loads(json.dumps(config.to_custom_config()))
        assert set(custom_config) == {f.name for f in dataclasses.fields(config)}
        back = TrainingConfig.from_custom_config(custom_config)
        assert back == config
        assert back.to_custom_config() == config.to_custom_config()
        for key, value in back.to_custom_config().items():
            assert type(value) is type(getattr(config, key)), key


def test_cpu_profile_keeps_the_demo_configuration():
    custom_config = configs.PROFILES["cpu"].training.to_custom_config()
    assert {k: custom_config[k] for k in CPU_DEMO_KEYS} == CPU_DEMO_KEYS
    defaults = TrainingConfig().to_custom_config()
    assert {k: v for k, v in custom_config.items() if k not in CPU_DEMO_KEYS} == {
        k: v for k, v in defaults.items() if k not in CPU_DEMO_KEYS
    }
    cpu = configs.PROFILES["cpu"]
    assert (cpu.ingest.image_size, cpu.ingest.eval_fraction) == (256, 0.25)
    assert (cpu.ingest.beam_workers, cpu.train_steps) == (2, 600)
    assert (cpu.synthetic_patients, cpu.synthetic_rows) == (300, 512)
    assert cpu.auc_lower_bound == 0.65


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"resolution": 100, "base_resolution": 64}, "multiple"),
        ({"width": 0}, "width"),
        ({"augment": "false"}, "augment must be a boolean"),
        ({"learning_rate": "0.1"}, "learning_rate must be a number"),
        ({"epochs": 2.0}, "epochs must be an integer"),
        ({"batch_size": True}, "batch_size must be an integer"),
    ],
)
def test_replace_validates_the_training_config(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(configs.PROFILES["cpu"].training, **changes)


@pytest.mark.parametrize(
    "part, changes, message",
    [
        ("ingest", {"image_size": 0}, "image_size"),
        ("ingest", {"eval_fraction": 1.0}, "eval_fraction"),
        ("ingest", {"beam_workers": -1}, "beam_workers"),
        ("ingest", {"beam_worker_mode": "fork"}, "beam_worker_mode must be one of"),
        ("profile", {"train_steps": 0}, "train_steps"),
        ("profile", {"auc_lower_bound": 1.5}, "auc_lower_bound"),
        ("profile", {"synthetic_patients": 0}, "synthetic_patients"),
        ("profile", {"training": {"model": "morphhr"}}, "must be a TrainingConfig"),
    ],
)
def test_ingest_config_and_profile_are_validated(part, changes, message):
    profile = configs.PROFILES["cpu"]
    target = profile.ingest if part == "ingest" else profile
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(target, **changes)
