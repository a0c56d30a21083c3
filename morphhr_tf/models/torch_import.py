"""Copy PyTorch (torchvision / timm) ResNet18/34 weights into :func:`resnet18`.

torchvision's and timm's basic-block ResNets share one state-dict layout
(`conv1`, `bn1`, `layer{1..4}.{j}.{conv1,bn1,conv2,bn2,downsample.0,
downsample.1}`, `fc`) and the same padding as :func:`morphhr_tf.models.resnet18`
(a zero-padded max pool after a ReLU equals PyTorch's `-inf` padding). The
state dict is read with numpy: from a `.safetensors` file through the
`safetensors` package (no torch needed), from a `.pth` / `.pt` file when
torch is installed, or given directly as a mapping of arrays.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import keras
import numpy as np

from morphhr_tf.morph import weight_maps

_BLOCK = re.compile(r"^stack(\d+)_block(\d+)_([012])_(conv|bn)$")
_BLOCK_PART = {
    ("0", "conv"): "downsample.0",
    ("0", "bn"): "downsample.1",
    ("1", "conv"): "conv1",
    ("1", "bn"): "bn1",
    ("2", "conv"): "conv2",
    ("2", "bn"): "bn2",
}
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_PREFIXES = ("module.", "model.")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict as numpy arrays.

    Args:
        path: a `.safetensors` file (needs the `safetensors` package) or a
            `.pth` / `.pt` / `.bin` file saved with `torch.save(state_dict)`
            (needs torch).

    Returns:
        Tensor name -> float32 (or integer) numpy array.

    Raises:
        ValueError: if the extension is unknown or the file holds no mapping.
        ImportError: if the package needed for the format is not installed.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise ImportError(
                "Reading .safetensors files needs the 'safetensors' package "
                "(pip install safetensors); torch is not needed. "
                f"Received: path={path!r}"
            ) from error
        return {k: np.asarray(v) for k, v in load_file(path).items()}
    if path.endswith((".pth", ".pt", ".bin")):
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                "Reading .pth state dicts needs torch; convert the file to "
                f".safetensors to read it without torch. Received: path={path!r}"
            ) from error
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, Mapping):
            raise ValueError(
                f"{path!r} does not hold a state dict (a mapping of tensors). "
                f"Received: a {type(state).__name__}."
            )
        return {k: v.detach().cpu().numpy() for k, v in state.items()}
    raise ValueError(
        "A state dict file must end in .safetensors, .pth, .pt or .bin. "
        f"Received: path={path!r}"
    )


def torch_resnet_name_map(model: keras.Model) -> dict[str, list[str]]:
    """Per weighted layer of a :func:`resnet18` / `resnet34` model, the
    PyTorch state-dict keys of its weights, in `get_weights` order.

    Raises:
        ValueError: if a weighted layer has no PyTorch counterpart.
    """
    name_map = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name in ("conv1_conv", "conv1_bn"):
            torch_name = "conv1" if layer.name.endswith("conv") else "bn1"
        elif layer.name == "logits":
            torch_name = "fc"
        elif match := _BLOCK.match(layer.name):
            stage, block, part, kind = match.groups()
            torch_name = f"layer{int(stage) + 1}.{block}.{_BLOCK_PART[(part, kind)]}"
        else:
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no PyTorch "
                "ResNet counterpart; the model must come from resnet18 / resnet34."
            )
        if isinstance(layer, keras.layers.BatchNormalization):
            name_map[layer.name] = [f"{torch_name}.{s}" for s in _BN_SUFFIXES]
        else:
            suffixes = ["weight", "bias"][: len(layer.weights)]
            name_map[layer.name] = [f"{torch_name}.{s}" for s in suffixes]
    return name_map


def import_torch_resnet(
    model: keras.Model, state_dict: Mapping[str, np.ndarray] | str | os.PathLike
) -> keras.Model:
    """Copies torchvision / timm ResNet18/34 weights into `model`, in place.

    Every weight is checked (name and shape, layer by layer) before anything
    is written. Conv kernels go from `(out, in, kh, kw)` to `(kh, kw, in,
    out)`, the `fc` matrix is transposed; the head (`logits`) is copied only
    if the state dict has `fc` weights of the model's shape, otherwise it
    keeps its own. A 1-channel model gets the 3-channel stem summed over its
    input channels (the channel-collapse morph): `model(x)` then equals the
    PyTorch network on `x` repeated three times. Inputs must be normalised as
    the PyTorch network expects (channels-last here).

    Args:
        model: from :func:`morphhr_tf.models.resnet18` / `resnet34`.
        state_dict: a mapping of numpy arrays (or torch tensors' `.numpy()`),
            or a file path for :func:`load_state_dict`. Keys may carry a
            `module.` / `model.` prefix.

    Returns:
        `model`, for chaining.

    Raises:
        ValueError: if a key is missing, has another shape, or the state dict
            has weights the model has no place for (e.g. a deep-stem timm
            `resnet18d`, or a bottleneck ResNet50); nothing is written then.
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = load_state_dict(state_dict)
    state = _strip_prefixes(state_dict)
    name_map = torch_resnet_name_map(model)
    if "logits" in name_map and not _head_fits(model, state, name_map["logits"]):
        del name_map["logits"]
    planned, used = {}, set()
    for layer_name, keys in name_map.items():
        layer = model.get_layer(layer_name)
        values = []
        for key, variable in zip(keys, layer.weights):
            if key not in state:
                raise ValueError(
                    f"The state dict has no {key!r} for layer '{layer_name}'. "
                    f"Received keys like: {sorted(state)[:6]}"
                )
            value = _to_keras(layer, key, np.asarray(state[key], np.float32), variable)
            values.append(value)
            used.add(key)
        planned[layer_name] = values
    unused = sorted(
        k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES)
    )
    unused = [k for k in unused if not k.startswith("fc.")]
    if unused:
        raise ValueError(
            f"The state dict has weights model '{model.name}' has no place for: "
            f"{unused[:8]}. Is it a basic-block ResNet18/34 with a plain stem?"
        )
    for layer_name, values in planned.items():
        model.get_layer(layer_name).set_weights(values)
    return model


def _strip_prefixes(state: Mapping) -> dict:
    result = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        result[key] = value
    return result


def _head_fits(model, state, keys) -> bool:
    weights = model.get_layer("logits").weights
    return all(
        k in state and np.shape(state[k])[::-1] == tuple(w.shape)
        for k, w in zip(keys, weights)
    )


def _to_keras(layer, key: str, value: np.ndarray, variable) -> np.ndarray:
    """One PyTorch tensor in Keras layout, its shape checked."""
    if value.ndim == 4:
        value = np.transpose(value, (2, 3, 1, 0))
        if (
            layer.name == "conv1_conv"
            and value.shape[2] == 3
            and variable.shape[2] == 1
        ):
            value = weight_maps.collapse_kernel(value, axis=2)
    elif value.ndim == 2:
        value = value.T
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(
            f"{key!r} has shape {tuple(value.shape)} in Keras layout but layer "
            f"'{layer.name}' needs {tuple(variable.shape)} for its "
            f"'{variable.name}'. Is the model's width or depth that of the "
            "PyTorch network?"
        )
    return value
