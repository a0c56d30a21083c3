"""Mixed-precision policy selection: what ``precision="auto"`` means here.

``auto`` picks ``mixed_float16`` on GPUs of compute capability >= 7.0 (tensor
cores; Keras 3 wraps the optimizer in a ``LossScaleOptimizer`` at compile),
``mixed_bfloat16`` on CPUs with bfloat16 instructions (``avx512_bf16`` or AMX),
and ``float32`` otherwise. Under either mixed policy the variables stay
float32; the model builders keep the output layer in float32.
"""

from __future__ import annotations

import tensorflow as tf

from morphhr_tf.cpu import cpu_flags

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_supports_bfloat16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has bfloat16 arithmetic (``avx512_bf16`` or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def _gpu_compute_capabilities() -> list[tuple[int, int]]:
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def select_precision(
    requested: str = "auto",
    *,
    gpu_capabilities: list[tuple[int, int]] | None = None,
    flags: frozenset[str] | None = None,
) -> str:
    """Resolves a precision request to a Keras dtype policy name.

    Args:
        requested: one of ``PRECISIONS``. Anything but ``auto`` is returned
            as is.
        gpu_capabilities: compute capabilities of the visible GPUs; ``None``
            asks TensorFlow. An empty list means CPU only.
        flags: CPU flags; ``None`` reads ``/proc/cpuinfo``.

    Returns:
        ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.

    Raises:
        ValueError: for an unknown request.

    Example:

    >>> select_precision("auto", gpu_capabilities=[(8, 0)])
    'mixed_float16'
    >>> select_precision("auto", gpu_capabilities=[], flags=frozenset({"avx512_bf16"}))
    'mixed_bfloat16'
    """
    if requested not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {PRECISIONS}. Received: precision={requested!r}"
        )
    if requested != "auto":
        return requested
    if gpu_capabilities is None:
        gpu_capabilities = _gpu_compute_capabilities()
    if gpu_capabilities:
        if all(cap >= (7, 0) for cap in gpu_capabilities):
            return "mixed_float16"
        return "float32"
    if cpu_supports_bfloat16(flags):
        return "mixed_bfloat16"
    return "float32"
