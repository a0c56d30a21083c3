import dataclasses
import json

import pytest

from morphhr_tf.training.config import TrainingConfig


def test_defaults_and_json_number_coercion():
    config = TrainingConfig.from_custom_config(
        {"resolution": 256.0, "base_resolution": 128, "learning_rate": 1, "augment": 0}
    )
    assert config.resolution == 256 and isinstance(config.resolution, int)
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.augment is False
    assert config.scale == 2
    assert TrainingConfig.from_custom_config(None) == TrainingConfig()


def test_resnet18_scale_is_one():
    assert TrainingConfig(model="resnet18", resolution=100).scale == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"modell": "morphhr"}, "modell"),
        ({"model": "vgg"}, "vgg"),
        ({"resolution": 100, "base_resolution": 64}, "multiple"),
        ({"precision": "fp8"}, "fp8"),
        ({"strategy": "tpu"}, "tpu"),
        ({"batch_size": 0}, "batch_size"),
        ({"resolution": 64.5}, "integer"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ],
)
def test_invalid_options_are_refused_with_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_custom_config(options)


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), ("false", False), ("False", False), ("0", False),
     ("no", False), ("true", True), ("1", True), (1, True), (0, False)],
)  # fmt: skip
def test_booleans_are_parsed_strictly(value, expected):
    config = TrainingConfig.from_custom_config({"augment": value})
    assert config.augment is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, None, [True]])
def test_unclear_booleans_are_refused(value):
    with pytest.raises(ValueError, match="augment must be a boolean"):
        TrainingConfig.from_custom_config({"augment": value})


def test_detail_branch_is_validated():
    assert TrainingConfig().detail_branch == "antithetic"
    assert TrainingConfig(detail_branch="none").detail_branch == "none"
    with pytest.raises(ValueError, match="detail_branch must be one of"):
        TrainingConfig(detail_branch="ones")


def test_to_custom_config_round_trips_through_json():
    config = TrainingConfig(
        model="resnet18", resolution=96, learning_rate=1, augment=False, pretrained="x"
    )
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    custom_config = json.loads(json.dumps(config.to_custom_config()))
    assert TrainingConfig.from_custom_config(custom_config) == config
    assert TrainingConfig.from_custom_config(TrainingConfig().to_custom_config()) == (
        TrainingConfig()
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"augment": "false"}, "augment must be a boolean"),
        ({"augment": 0}, "augment must be a boolean"),
        ({"resolution": 128.0}, "resolution must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"learning_rate": "1e-3"}, "learning_rate must be a number"),
        ({"model": None}, "model must be a string"),
    ],
)
def test_the_constructor_and_replace_check_types(options, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**options)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainingConfig(), **options)
