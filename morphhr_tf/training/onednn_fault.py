"""Refuses a training run that TensorFlow's oneDNN kernels would corrupt.

TensorFlow 2.21's oneDNN kernel gradient of a 1x1 convolution with a stride
above 1 and fewer than 16 input channels (``Conv2DBackpropFilter``, oneDNN's
``jit_1x1`` backward-weights primitive) corrupts the heap on AVX-512 CPUs
when the batch is odd: the process dies steps later (``corrupted size vs.
prev_size``, ``free(): invalid next size``, a segmentation fault) or a later
op fails to create its oneDNN primitive. An even batch, 16 or more input
channels, oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``) or capped below AVX-512
(``ONEDNN_MAX_CPU_ISA=AVX2``) do not meet it;
``benchmarks/onednn_pointwise_grad.py`` shows it on a machine.

ResNet18's shortcut convolutions are such convolutions, and with ``width``
below 16 the first has fewer than 16 input channels; the paper's width (64)
and the CPU demo's (16) do not meet the fault. :func:`check_pointwise_gradient_fault`
turns the crash into a clear error before the fit starts.
"""

from __future__ import annotations

import os

import keras

from morphhr_tf.cpu import cpu_flags

# TensorFlow versions the fault was measured in ("major.minor").
FAULTY_TENSORFLOW = ("2.21",)
# Input channels from which the kernel no longer meets the fault.
SAFE_IN_CHANNELS = 16


def faulty_pointwise_convs(model: keras.Model) -> list[tuple[str, int]]:
    """``(name, input channels)`` of ``model``'s trainable 1x1 strided
    convolutions with fewer than :data:`SAFE_IN_CHANNELS` input channels,
    nested models included."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        stack.extend(reversed(getattr(layer, "layers", [])))
        if (
            isinstance(layer, keras.layers.Conv2D)
            and layer.trainable
            and tuple(layer.kernel_size) == (1, 1)
            and max(layer.strides) > 1
            and layer.kernel.shape[2] < SAFE_IN_CHANNELS
        ):
            found.append((layer.name, int(layer.kernel.shape[2])))
    return found


def _tensorflow_version() -> str:
    import tensorflow as tf

    return ".".join(tf.__version__.split(".")[:2])


def _onednn_on() -> bool:
    # TensorFlow's default on Linux x86 is on; only "0"/"false" turn it off.
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in (
        "0",
        "false",
    )


# oneDNN's ISA caps below AVX-512 (``ONEDNN_MAX_CPU_ISA``, formerly
# ``DNNL_MAX_CPU_ISA``): with one of these the kernel does not meet the fault.
_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def _avx512() -> bool:
    """Whether oneDNN runs AVX-512 code: the CPU has it and no ISA cap below
    it is set."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        if os.environ.get(name, "").strip().upper() in _BELOW_AVX512:
            return False
    return _cpu_has_avx512()


def _cpu_has_avx512() -> bool:
    """``avx512f`` among the CPU's flags (``True`` where ``/proc/cpuinfo``
    cannot tell: refusing is the safer guess)."""
    flags = cpu_flags()
    return "avx512f" in flags if flags else True


def fault_applies(
    backend: str | None = None,
    tensorflow_version: str | None = None,
    onednn: bool | None = None,
    avx512: bool | None = None,
) -> bool:
    """Whether this process can meet the fault; each fact is read from the
    process unless given."""
    backend = keras.backend.backend() if backend is None else backend
    if backend != "tensorflow":
        return False
    version = (
        _tensorflow_version() if tensorflow_version is None else tensorflow_version
    )
    onednn = _onednn_on() if onednn is None else onednn
    avx512 = _avx512() if avx512 is None else avx512
    return version in FAULTY_TENSORFLOW and onednn and avx512


def check_pointwise_gradient_fault(
    model: keras.Model, batch_size: int, replicas: int = 1, **facts
) -> None:
    """Raises ``ValueError`` when training ``model`` at ``batch_size`` (split
    over ``replicas``) would meet the fault.

    Args:
        model: the model about to be fitted.
        batch_size: the global training batch (training drops a last partial
            batch, so every step has this many examples).
        replicas: replicas in sync; each takes ``batch_size // replicas``
            or one more.
        **facts: :func:`fault_applies`' arguments (default: this process's).
    """
    per_replica = {batch_size // replicas, -(-batch_size // replicas)}
    odd = sorted(b for b in per_replica if b % 2)
    if not odd or not fault_applies(**facts):
        return
    convs = faulty_pointwise_convs(model)
    if not convs:
        return
    name, channels = convs[0]
    raise ValueError(
        f"Training {model.name!r} at a batch of {odd[0]} per replica would "
        "corrupt memory: TensorFlow's oneDNN kernel gradient of a 1x1 "
        f"strided convolution with fewer than {SAFE_IN_CHANNELS} input "
        "channels corrupts the heap at odd batches on AVX-512 CPUs "
        f"(here {len(convs)} such layer(s), first {name!r} with {channels} "
        f"input channels; batch_size={batch_size} over {replicas} "
        f"replica(s)). Use an even batch per replica, a width of at least "
        f"{SAFE_IN_CHANNELS}, or set TF_ENABLE_ONEDNN_OPTS=0 before "
        "TensorFlow is imported. benchmarks/onednn_pointwise_grad.py shows "
        "the fault on a machine."
    )
