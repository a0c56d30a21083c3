"""Distribution strategy selection: what ``strategy="auto"`` means here.

``auto`` is a ``MirroredStrategy`` over every visible GPU, and a single-device
strategy on the CPU. ``mirrored`` on a machine without GPUs mirrors over the
logical CPU devices (``tf.config.set_logical_device_configuration``), which is
how the tests exercise synchronous data parallelism without a GPU.
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "one_device")


def select_strategy(requested: str = "auto") -> tf.distribute.Strategy:
    """Builds the distribution strategy for a request.

    Args:
        requested: ``auto``, ``mirrored`` or ``one_device``.

    Returns:
        A ``tf.distribute.Strategy``; ``num_replicas_in_sync`` says how many
        replicas train in lockstep.

    Raises:
        ValueError: for an unknown request.

    Example:

    >>> select_strategy("one_device").num_replicas_in_sync
    1
    """
    if requested not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {STRATEGIES}. Received: strategy={requested!r}"
        )
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if requested == "auto":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    cpus = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in cpus])
