"""Pure numpy maps from teacher weights to student weights.

Channel bookkeeping uses an *index map*: an integer vector with one entry per
student channel, holding the teacher channel it copies, or :data:`NEW_UNIT`
(-1) for a brand-new channel whose value is free (its outgoing weights are
zero). Net2WiderNet (Chen et al., 2016) replicates channels; the network
morphism width morph (Wei et al., 2016) adds new ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEW_UNIT = -1


def _check_widths(old_width: int, new_width: int) -> None:
    if not isinstance(old_width, (int, np.integer)) or old_width < 1:
        raise ValueError(
            f"old_width must be a positive integer. Received: old_width={old_width!r}"
        )
    if not isinstance(new_width, (int, np.integer)) or new_width <= old_width:
        raise ValueError(
            f"new_width must be an integer above the current width {old_width}. "
            f"Received: new_width={new_width!r}"
        )


def net2net_index_map(
    old_width: int, new_width: int, rng: np.random.Generator
) -> np.ndarray:
    """Net2Net's random mapping g: identity on the old units, then draws.

    Args:
        old_width: teacher units.
        new_width: student units, above `old_width`.
        rng: the random generator drawing the replicated units.

    Returns:
        `int64` vector of length `new_width`; entry `j` is `g(j)`.
    """
    _check_widths(old_width, new_width)
    extra = rng.integers(0, old_width, size=new_width - old_width)
    return np.concatenate([np.arange(old_width), extra]).astype(np.int64)


def netmorph_index_map(old_width: int, new_width: int) -> np.ndarray:
    """Keeps the old units, then marks `new_width - old_width` new ones."""
    _check_widths(old_width, new_width)
    extra = np.full(new_width - old_width, NEW_UNIT)
    return np.concatenate([np.arange(old_width), extra]).astype(np.int64)


def uniform_index_map(old_width: int, new_width: int) -> np.ndarray:
    """Copies every unit `new_width // old_width` times: `[0..old-1, 0..old-1, ...]`.

    Keeps channel statistics (mean, variance over channels) unchanged.

    Raises:
        ValueError: if `new_width` is not a multiple of `old_width`.
    """
    _check_widths(old_width, new_width)
    if new_width % old_width:
        raise ValueError(
            f"new_width must be a multiple of the current width {old_width}. "
            f"Received: new_width={new_width}"
        )
    return np.tile(np.arange(old_width), new_width // old_width).astype(np.int64)


def is_uniform_replication(index_map: np.ndarray, old_width: int) -> bool:
    """Whether `index_map` copies every teacher unit equally often (no new units)."""
    index_map = np.asarray(index_map)
    if np.any(index_map == NEW_UNIT) or len(index_map) % old_width:
        return False
    counts = np.bincount(index_map, minlength=old_width)
    return bool(np.all(counts == counts[0]))


def multiplier_index_map(index_map: np.ndarray, multiplier: int) -> np.ndarray:
    """Index map of a depthwise output with `multiplier` channels per input.

    Output channel `c * multiplier + k` reads input channel `c`; a new input
    channel gives `multiplier` new output channels.
    """
    index_map = np.asarray(index_map)
    k = np.arange(multiplier)
    expanded = index_map[:, None] * multiplier + k[None, :]
    expanded = np.where(index_map[:, None] == NEW_UNIT, NEW_UNIT, expanded)
    return expanded.reshape(-1).astype(np.int64)


def replication_counts(index_map: np.ndarray, old_width: int) -> np.ndarray:
    """How many student units copy each teacher unit (new units excluded)."""
    kept = index_map[index_map != NEW_UNIT]
    return np.bincount(kept, minlength=old_width)


def take_units(
    array: np.ndarray, index_map: np.ndarray, *, axis: int = -1, fill=0.0
) -> np.ndarray:
    """Student copy of a per-unit array: `out[..., j] = array[..., map[j]]`.

    Args:
        array: teacher array, units along `axis`.
        index_map: the index map.
        axis: the unit axis.
        fill: value of the new units: a scalar, or an array shaped like the
            result restricted to the new units.

    Returns:
        The student array (new units filled with `fill`).
    """
    array = np.asarray(array)
    new = index_map == NEW_UNIT
    out = np.take(array, np.where(new, 0, index_map), axis=axis)
    out = np.moveaxis(out, axis, -1).copy()
    out[..., new] = fill if np.ndim(fill) == 0 else np.moveaxis(fill, axis, -1)
    return np.moveaxis(out, -1, axis)


def widen_outgoing(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    index_map: np.ndarray,
    new_kernel: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Widens a layer's own units (the kernel's last axis and the bias).

    Replicated units copy their teacher column and bias; new units take
    `new_kernel` (default zeros) and a zero bias.
    """
    kernel = take_units(
        kernel, index_map, axis=-1, fill=0.0 if new_kernel is None else new_kernel
    )
    if bias is not None:
        bias = take_units(bias, index_map, axis=-1, fill=0.0)
    return kernel, bias


def widen_incoming(
    kernel: np.ndarray, index_map: np.ndarray, old_width: int, *, axis: int = -2
) -> np.ndarray:
    """Adapts a consumer's kernel to a widened input.

    Student input row `j` is teacher row `map[j]` divided by the number of
    copies of that unit, so the copies sum back to the teacher's row; rows of
    new units are zero.
    """
    counts = replication_counts(index_map, old_width)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0)[:5].tolist()
        raise ValueError(
            f"Every teacher unit must be kept. Received an index map that drops "
            f"units {missing}."
        )
    scale = np.where(index_map == NEW_UNIT, 0.0, 1.0 / counts[np.maximum(index_map, 0)])
    rows = take_units(kernel, index_map, axis=axis, fill=0.0)
    shape = [1] * rows.ndim
    shape[axis] = -1
    return (rows * scale.reshape(shape)).astype(kernel.dtype)


def concat_index_maps(
    maps: Sequence[np.ndarray | None], old_widths: Sequence[int]
) -> np.ndarray:
    """Index map of a channel concatenation (`None`: input not widened)."""
    parts, offset = [], 0
    for index_map, width in zip(maps, old_widths):
        if index_map is None:
            index_map = np.arange(width)
        parts.append(np.where(index_map == NEW_UNIT, NEW_UNIT, index_map + offset))
        offset += width
    return np.concatenate(parts).astype(np.int64)


def flatten_index_map(
    index_map: np.ndarray, spatial_shape: Sequence[int], old_channels: int
) -> np.ndarray:
    """Index map after `Flatten` of a channels-last `(*spatial, C)` tensor."""
    positions = np.arange(int(np.prod(spatial_shape, dtype=np.int64)))
    flat = positions[:, None] * old_channels + index_map[None, :]
    flat = np.where(index_map[None, :] == NEW_UNIT, NEW_UNIT, flat)
    return flat.reshape(-1).astype(np.int64)


def identity_conv_kernel(kernel_size: Sequence[int], channels: int) -> np.ndarray:
    """A `(kh, kw, C, C)` delta kernel: a same-padded conv that copies its input."""
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"An identity conv needs odd kernel sizes. Received: {kernel_size}"
        )
    kernel = np.zeros((kh, kw, channels, channels), dtype=np.float32)
    kernel[kh // 2, kw // 2] = np.eye(channels, dtype=np.float32)
    return kernel


def identity_depthwise_kernel(kernel_size: Sequence[int], channels: int) -> np.ndarray:
    """A `(kh, kw, C, 1)` delta kernel: a same-padded depthwise identity."""
    kernel = identity_conv_kernel(kernel_size, 1)
    return np.tile(kernel, (1, 1, channels, 1))


def identity_batch_norm(channels: int, epsilon: float) -> list[np.ndarray]:
    """`[gamma, beta, moving_mean, moving_variance]` of an inference identity.

    The variance is `1 - epsilon` so that `sqrt(variance + epsilon) == 1`.
    """
    variance = np.float32(1.0) - np.float32(epsilon)
    return [
        np.ones(channels, np.float32),
        np.zeros(channels, np.float32),
        np.zeros(channels, np.float32),
        np.full(channels, variance, np.float32),
    ]


def pad_kernel(kernel: np.ndarray, kernel_size: Sequence[int]) -> np.ndarray:
    """Zero-pads a `(kh, kw, ...)` kernel, centred, to `kernel_size`."""
    kh, kw = kernel.shape[:2]
    nh, nw = kernel_size
    if nh < kh or nw < kw or (nh - kh) % 2 or (nw - kw) % 2:
        raise ValueError(
            "The new kernel size must be at least the old one and differ by an "
            f"even amount in each dimension. Received: {tuple(kernel_size)} for a "
            f"{(kh, kw)} kernel."
        )
    ph, pw = (nh - kh) // 2, (nw - kw) // 2
    pad = [(ph, ph), (pw, pw)] + [(0, 0)] * (kernel.ndim - 2)
    return np.pad(kernel, pad)


def collapse_kernel(kernel: np.ndarray, *, axis: int = -2) -> np.ndarray:
    """Sums a kernel over its input channels (keeps a size-1 axis).

    A conv with the summed kernel on `x` equals the original conv on `x`
    repeated along the channel axis.
    """
    return np.sum(kernel, axis=axis, keepdims=True, dtype=np.float64).astype(
        kernel.dtype
    )


def average_pool_kernel(
    pool_size: int, in_channels: int, out_channels: int
) -> np.ndarray:
    """A `(k, k, in, out)` kernel: stride-k average pooling of the first `out`
    input channels, zero on the remaining ones."""
    if out_channels > in_channels:
        raise ValueError(
            f"out_channels ({out_channels}) must not exceed in_channels "
            f"({in_channels})."
        )
    kernel = np.zeros((pool_size, pool_size, in_channels, out_channels), np.float32)
    idx = np.arange(out_channels)
    kernel[:, :, idx, idx] = 1.0 / (pool_size * pool_size)
    return kernel
