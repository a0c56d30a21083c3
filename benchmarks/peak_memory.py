"""The process's peak memory for the benchmark scripts, on any Keras backend.

One reader for ``throughput.py``, ``paper_table.py`` (TensorFlow) and
``gpu_check.py`` (JAX or PyTorch on a machine without TensorFlow): it imports
only the running backend's framework.
"""

from __future__ import annotations

import resource


def peak_memory_mb() -> tuple[float, str]:
    """``(megabytes, what)``: the accelerator's peak where the Keras backend
    runs on one, else the process's peak resident set size.

    ``what`` names the figure: ``"GPU peak"`` (TensorFlow's allocator),
    ``"<platform> peak"`` (JAX's first local device, e.g. ``"gpu peak"``),
    ``"cuda peak"`` (PyTorch's allocator) or ``"peak RSS"`` (``ru_maxrss``,
    KiB on Linux). Accelerator peaks count the framework's allocations only;
    peak RSS counts everything the process ever held at once.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
            return peak / 2**20, "GPU peak"
    elif backend == "jax":
        import jax

        device = jax.local_devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats:
            peak = stats.get("peak_bytes_in_use", 0)
            return peak / 2**20, f"{device.platform} peak"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20, "cuda peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "peak RSS"
