"""The CPU's feature flags (``/proc/cpuinfo``), without TensorFlow.

One reader for what the package decides from the CPU: the automatic
precision (:mod:`morphhr_tf.training.precision`: bfloat16 instructions) and
the oneDNN fault's refusal (:mod:`morphhr_tf.training.onednn_fault`:
AVX-512), which model-side scripts on machines without TensorFlow import too.
"""

from __future__ import annotations


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor listed in ``cpuinfo_path``.

    Returns an empty set where the file does not exist (not Linux).
    """
    try:
        with open(cpuinfo_path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
