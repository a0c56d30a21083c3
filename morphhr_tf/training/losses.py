"""The multi-label task's loss: binary cross-entropy weighted per label.

A multi-label data set cannot be balanced by sampling (an image holds
several labels at once, each with its own prevalence: ChestX-ray14's Hernia
is about 0.2% of images, Infiltration about 18%). The loss weights instead:
each label's positives by ``n / (2 n_positive)`` and its negatives by
``n / (2 n_negative)``, so every label contributes as if it were balanced,
the multi-label form of the binary task's ``balance="class_weight"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


def unbalanceable_labels(n: int, positives: Sequence[int]) -> list[int]:
    """The indices of the labels with no positive or no negative among ``n``
    examples (a rare finding in a small training split)."""
    return [j for j, pos in enumerate(positives) if pos <= 0 or pos >= n]


def balancing_weights(
    n: int, positives: Sequence[int]
) -> tuple[list[float], list[float]]:
    """``(positive_weights, negative_weights)`` per label for ``n`` examples.

    A label that lacks a class (:func:`unbalanceable_labels`: its weight
    would be infinite) keeps weight 1 for both; the trainer logs it and
    records it in its summary, and its eval AUC is undefined or rests on a
    handful of images.

    Raises:
        ValueError: if ``n`` is not positive or a count lies outside [0, n].
    """
    if n < 1 or any(not 0 <= pos <= n for pos in positives):
        raise ValueError(
            f"positives must lie in [0, n] for n >= 1. Received: n={n}, "
            f"positives={list(positives)}"
        )
    skip = set(unbalanceable_labels(n, positives))
    pos_w = [1.0 if j in skip else n / (2.0 * p) for j, p in enumerate(positives)]
    neg_w = [1.0 if j in skip else n / (2.0 * (n - p)) for j, p in enumerate(positives)]
    return pos_w, neg_w


@keras.saving.register_keras_serializable(package="morphhr_tf")
class LabelWeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on probabilities, one weight per label and class.

    ``loss = mean_j w_j(y_j) * bce(y_j, p_j)`` with ``w_j(1) =
    positive_weights[j]`` and ``w_j(0) = negative_weights[j]``; with all
    weights 1 it equals ``keras.losses.BinaryCrossentropy()``.

    Args:
        positive_weights, negative_weights: one float per label.
    """

    def __init__(
        self,
        positive_weights: Sequence[float],
        negative_weights: Sequence[float],
        name: str = "label_weighted_binary_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if len(positive_weights) != len(negative_weights) or not positive_weights:
            raise ValueError(
                "positive_weights and negative_weights need one value per label. "
                f"Received: {len(positive_weights)} and {len(negative_weights)}"
            )
        self.positive_weights = [float(w) for w in positive_weights]
        self.negative_weights = [float(w) for w in negative_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        pos = ops.convert_to_tensor(self.positive_weights, y_pred.dtype)
        neg = ops.convert_to_tensor(self.negative_weights, y_pred.dtype)
        weights = y_true * pos + (1.0 - y_true) * neg
        bce = keras.losses.binary_crossentropy(
            ops.expand_dims(y_true, -1), ops.expand_dims(y_pred, -1)
        )
        return ops.mean(weights * bce, axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "positive_weights": self.positive_weights,
            "negative_weights": self.negative_weights,
        }
