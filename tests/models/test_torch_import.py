"""PyTorch ResNet18/34 weights: name map, layouts, and a numpy forward pass."""

import sys

import numpy as np
import pytest

from morphhr_tf.models import resnet18, resnet34
from morphhr_tf.models.torch_import import (
    import_torch_resnet,
    load_state_dict,
    torch_resnet_name_map,
)

TOL = 1e-4
BLOCKS = {resnet18: (2, 2, 2, 2), resnet34: (3, 4, 6, 3)}


def random_state_dict(model, seed=0, in_channels=3):
    """A torchvision-layout state dict shaped for `model` (3-channel stem)."""
    rng = np.random.default_rng(seed)
    state = {}
    for layer_name, keys in torch_resnet_name_map(model).items():
        layer = model.get_layer(layer_name)
        for key, variable in zip(keys, layer.weights):
            shape = tuple(variable.shape)
            if len(shape) == 4:
                shape = (shape[3], shape[2], shape[0], shape[1])
                if layer_name == "conv1_conv":
                    shape = (shape[0], in_channels) + shape[2:]
                fan_in = shape[1] * shape[2] * shape[3]
                value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            elif len(shape) == 2:
                value = rng.normal(0, 0.3, shape[::-1])
            elif key.endswith(("running_var", ".weight")):
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.normal(0, 0.2, shape)
            state[key] = value.astype(np.float32)
        if keys[0].endswith(".weight") and len(keys) == 4:
            state[keys[0].rsplit(".", 1)[0] + ".num_batches_tracked"] = np.array(7)
    return state


def np_conv(x, w, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    h = (x.shape[2] - kh) // stride + 1
    wd = (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * h : stride, j : j + stride * wd : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out


def np_bn(x, sd, p):
    g, b = sd[f"{p}.weight"], sd[f"{p}.bias"]
    m, v = sd[f"{p}.running_mean"], sd[f"{p}.running_var"]
    scale = (g / np.sqrt(v.astype(np.float64) + 1e-5))[None, :, None, None]
    return (x - m[None, :, None, None]) * scale + b[None, :, None, None]


def np_maxpool(x):
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    h, w = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    windows = [
        x[:, :, i : i + 2 * h : 2, j : j + 2 * w : 2]
        for i in range(3)
        for j in range(3)
    ]
    return np.max(windows, axis=0)


def np_resnet(sd, x_nchw, blocks):
    """The torchvision basic-block ResNet forward pass, in float64 numpy."""
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = relu(np_bn(np_conv(x_nchw, sd["conv1.weight"], 2, 3), sd, "bn1"))
    x = np_maxpool(x)
    for stage, n in enumerate(blocks):
        for j in range(n):
            p = f"layer{stage + 1}.{j}"
            stride = 2 if stage > 0 and j == 0 else 1
            y = relu(
                np_bn(np_conv(x, sd[f"{p}.conv1.weight"], stride, 1), sd, f"{p}.bn1")
            )
            y = np_bn(np_conv(y, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = np_bn(
                    np_conv(x, sd[f"{p}.downsample.0.weight"], stride, 0),
                    sd,
                    f"{p}.downsample.1",
                )
            x = relu(x + y)
    pooled = x.mean(axis=(2, 3))
    return pooled @ sd["fc.weight"].T.astype(np.float64) + sd["fc.bias"]


def logits_model(build, channels=3):
    import keras

    model = build((32, 32, channels), width=4, num_classes=5)
    return model, keras.Model(model.input, model.get_layer("logits").output)


@pytest.mark.parametrize("build", [resnet18, resnet34])
def test_import_matches_numpy_reference(build):
    model, logits = logits_model(build)
    state = random_state_dict(model)
    import_torch_resnet(model, {f"module.{k}": v for k, v in state.items()})
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    reference = np_resnet(
        state, x.transpose(0, 3, 1, 2).astype(np.float64), BLOCKS[build]
    )
    got = np.asarray(logits(x, training=False), np.float64)
    assert 0.1 < np.max(np.abs(reference)) < 100
    assert np.max(np.abs(got - reference)) <= TOL


def test_one_channel_model_gets_the_collapsed_stem():
    model, logits = logits_model(resnet18, channels=1)
    state = random_state_dict(model, seed=2, in_channels=3)
    import_torch_resnet(model, state)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 1)).astype(np.float32)
    rgb = np.repeat(x, 3, axis=-1).transpose(0, 3, 1, 2).astype(np.float64)
    reference = np_resnet(state, rgb, BLOCKS[resnet18])
    got = np.asarray(logits(x, training=False), np.float64)
    assert np.max(np.abs(got - reference)) <= TOL


def test_head_of_another_size_keeps_its_weights():
    model, _ = logits_model(resnet18)
    state = random_state_dict(model)
    state["fc.weight"] = np.zeros((1000, 32), np.float32)
    state["fc.bias"] = np.zeros((1000,), np.float32)
    before = model.get_layer("logits").get_weights()[0].copy()
    import_torch_resnet(model, state)
    np.testing.assert_array_equal(model.get_layer("logits").get_weights()[0], before)
    np.testing.assert_array_equal(
        model.get_layer("conv1_bn").get_weights()[0], state["bn1.weight"]
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.pop("layer2.0.downsample.0.weight"),
            "layer2.0.downsample.0.weight",
        ),
        (
            lambda s: s.update({"layer1.0.conv1.weight": np.zeros((4, 4, 5, 5))}),
            "'layer1.0.conv1.weight' has shape",
        ),
        (lambda s: s.update({"conv1.3.weight": np.zeros(3)}), "no place for"),
    ],
)
def test_bad_state_dicts_are_refused_before_writing(edit, message):
    model, _ = logits_model(resnet18)
    state = random_state_dict(model)
    edit(state)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message):
        import_torch_resnet(model, state)
    for old, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, now)


def test_safetensors_file_round_trip(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model, logits = logits_model(resnet18)
    state = random_state_dict(model, seed=4)
    path = tmp_path / "resnet18.safetensors"
    safetensors_numpy.save_file(state, str(path))
    import_torch_resnet(model, path)
    x = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype(np.float32)
    reference = np_resnet(
        state, x.transpose(0, 3, 1, 2).astype(np.float64), BLOCKS[resnet18]
    )
    assert np.max(np.abs(np.asarray(logits(x), np.float64) - reference)) <= TOL


def test_pth_file_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    model, _ = logits_model(resnet18)
    state = random_state_dict(model, seed=6)
    path = tmp_path / "resnet18.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
    loaded = load_state_dict(path)
    assert set(loaded) == set(state)


def test_missing_safetensors_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        load_state_dict(tmp_path / "weights.safetensors")


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="weights.npz"):
        load_state_dict(tmp_path / "weights.npz")
