"""Learning-rate schedules and the layer-wise learning-rate optimizer.

MorphHR's stage 2 trains the new full-resolution front at the base learning
rate and the (already trained) base trunk at a fraction of it.
:class:`LayerwiseAdamW` does that with one optimizer: each variable's step uses
``learning_rate * multiplier(layer)``.
"""

from __future__ import annotations

import keras


def make_learning_rate(
    learning_rate: float,
    steps: int,
    *,
    kind: str = "cosine",
    warmup_fraction: float = 0.05,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A learning rate or schedule for ``steps`` optimizer steps.

    Args:
        learning_rate: the peak learning rate.
        steps: total optimizer steps of this stage.
        kind: ``cosine`` (linear warm-up from 0, then cosine decay to 1% of
            the peak) or ``constant``.
        warmup_fraction: fraction of ``steps`` spent warming up.

    Returns:
        A float (``constant``) or a ``CosineDecay`` schedule.

    Raises:
        ValueError: for an unknown ``kind`` or non-positive ``steps``.
    """
    if kind not in ("cosine", "constant"):
        raise ValueError(
            f"kind must be 'cosine' or 'constant'. Received: kind={kind!r}"
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1. Received: steps={steps}")
    if kind == "constant":
        return float(learning_rate)
    warmup = int(round(steps * warmup_fraction))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=max(steps - warmup, 1),
        alpha=0.01,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


@keras.saving.register_keras_serializable(package="morphhr_tf")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate is scaled per layer.

    Args:
        lr_multipliers: ``{layer_name: multiplier}``; a variable belongs to
            the layer named by the first component of its ``path``.
        default_multiplier: multiplier of every other variable.
        **kwargs: passed to ``keras.optimizers.AdamW``.

    Example:

    >>> opt = LayerwiseAdamW(
    ...     learning_rate=1e-3, default_multiplier=0.1,
    ...     lr_multipliers={"morphhr_front_conv_0": 1.0})
    """

    def __init__(
        self,
        lr_multipliers: dict[str, float] | None = None,
        default_multiplier: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.default_multiplier = float(default_multiplier)
        # id() of every variable object update_step may receive -> multiplier.
        self._multiplier_by_id: dict[int, float] = {}

    def multiplier_for(self, variable) -> float:
        layer = variable.path.split("/")[0]
        return float(self.lr_multipliers.get(layer, self.default_multiplier))

    def build(self, var_list):
        super().build(var_list)
        self._multiplier_by_id = {}
        for variable in var_list:
            multiplier = self.multiplier_for(variable)
            for alias in _update_step_aliases(variable):
                self._multiplier_by_id[id(alias)] = multiplier

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multiplier_by_id.get(id(variable))
        if multiplier is None:
            raise ValueError(
                f"LayerwiseAdamW got a variable it was not built with: "
                f"{variable.name!r}. Build the optimizer with the model's "
                "trainable variables."
            )
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "lr_multipliers": dict(self.lr_multipliers),
                "default_multiplier": self.default_multiplier,
            }
        )
        return config


def _update_step_aliases(variable) -> list:
    """The objects `update_step` may receive for the Keras `variable`.

    On the TensorFlow backend Keras hands `update_step` the backing
    `tf.Variable` (`variable.value`) rather than the Keras variable, and under
    a distribution strategy (`MirroredStrategy`, `MultiWorkerMirroredStrategy`)
    one per-replica component of it at a time; the components come from the
    public `Strategy.experimental_local_results`.
    """
    aliases = [variable]
    if keras.backend.backend() != "tensorflow":
        return aliases  # JAX, PyTorch: update_step gets the Keras variable
    import tensorflow as tf  # here only: the JAX benchmarks run without TF

    value = getattr(variable, "value", None)
    if isinstance(value, tf.Variable):
        aliases.append(value)
        if isinstance(value, tf.distribute.DistributedValues):
            strategy = value.distribute_strategy
            aliases.extend(strategy.experimental_local_results(value))
    return aliases
