import keras
import keras_hub
import numpy as np
import pytest

from morphhr_tf.models import import_keras_hub_resnet, resnet18
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

# keras-hub requires 64 stem filters; later stages are narrow to stay fast.
STAGES = [64, 16, 16, 16]


def backbone(block_type="basic_block", **kwargs):
    model = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=STAGES,
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type=block_type,
        image_shape=(32, 32, 3),
        **kwargs,
    )
    return randomize_weights(model, seed=0)


@pytest.fixture(scope="module")
def hub():
    return backbone()


def images(channels, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, 32, 32, channels)).astype(np.float32)


def test_import_gives_equal_features(hub):
    model = resnet18((32, 32, 3), stage_filters=STAGES, include_top=False)
    import_keras_hub_resnet(model, hub)
    x = images(3)
    ref = hub(x, training=False)
    assert float(np.max(np.abs(np.asarray(ref)))) > 0.05
    assert max_abs_difference(model(x, training=False), ref) <= 1e-4


def test_import_into_grayscale_model_collapses_the_stem(hub):
    model = resnet18((32, 32, 1), stage_filters=STAGES, include_top=True)
    import_keras_hub_resnet(model, hub)
    features = keras_model_features(model)
    x = images(1)
    ref = hub(np.repeat(x, 3, axis=-1), training=False)
    assert max_abs_difference(features(x, training=False), ref) <= 1e-4


def keras_model_features(model):
    return keras.Model(model.input, model.get_layer("stack3_block1_out").output)


def test_refuses_bottleneck_backbone():
    hub = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="bottleneck_block",
        image_shape=(32, 32, 3),
    )
    with pytest.raises(ValueError, match="bottleneck_block"):
        import_keras_hub_resnet(resnet18((32, 32, 3), include_top=False), hub)


def test_refuses_width_mismatch_without_writing(hub):
    model = resnet18((32, 32, 3), stage_filters=[64, 16, 16, 32], include_top=False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="stack3_block0_1_conv"):
        import_keras_hub_resnet(model, hub)
    for old, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, now)
