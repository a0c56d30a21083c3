"""The trainer's evaluation passes: predictions, AUCs, the morph check, the gain.

Used by :mod:`morphhr_tf.training.trainer` between stages; every pass runs the
model in inference mode over an unshuffled eval dataset, so two passes over the
same files see the same images in the same order.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.export import float32_copy
from morphhr_tf.training.input_pipeline import make_dataset

# Batch size of the float32 morph-check passes: inference only, so it changes
# nothing but their memory use and speed.
MORPH_CHECK_BATCH_SIZE = 32


def predict(model: keras.Model, dataset: tf.data.Dataset) -> tuple:
    """``(probabilities, labels)`` of one pass over ``dataset``.

    Flat ``[N]`` arrays for a one-output (binary) model, ``[N, L]`` for a
    multi-label one.
    """
    probs, labels = [], []
    for images, y in dataset:
        p = np.asarray(model(images, training=False), np.float64)
        probs.append(p.reshape(len(p), -1))
        labels.append(np.asarray(y).reshape(len(p), -1))
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    if probs.shape[1] == 1:
        return probs.ravel(), labels.ravel()
    return probs, labels


def per_label_auc(labels: np.ndarray, probs: np.ndarray) -> list[float]:
    """The AUC of each column of ``[N, L]`` arrays (NaN for a column whose
    labels hold a single class)."""
    return [auc(labels[:, j], probs[:, j]) for j in range(labels.shape[1])]


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """:func:`morphhr_tf.evaluation.metrics.auc`, but NaN when ``labels``
    hold a single class (a tiny eval split): training goes on and the
    summary says the AUC is undefined.

    For ``[N, L]`` multi-label arrays: the mean of the labels' AUCs, over
    the labels whose AUC is defined (NaN if none is).
    """
    from morphhr_tf.evaluation import metrics

    if labels.ndim == 2:
        aucs = [a for a in per_label_auc(labels, probs) if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")
    if labels.min() == labels.max():
        return float("nan")
    return metrics.auc(labels, probs)


def evaluate_auc(model: keras.Model, dataset: tf.data.Dataset) -> float:
    """The AUC of ``model`` on one pass over ``dataset``."""
    probs, labels = predict(model, dataset)
    return auc(labels, probs)


def morph_check(
    base: keras.Model, model: keras.Model, eval_files: list[str], config: TrainingConfig
) -> dict[str, float]:
    """AUC of the base (on pooled images) and of the morphed model, in float32.

    Under a mixed policy the morph is function-preserving only up to the
    compute precision, so the check runs float32 copies of both models: the
    two AUCs agree and the largest probability difference is about 1e-6.
    """
    num_labels = config.num_outputs if config.task == "multilabel" else None
    base_ds = make_dataset(
        eval_files,
        resolution=config.base_resolution,
        batch_size=MORPH_CHECK_BATCH_SIZE,
        training=False,
        num_labels=num_labels,
    )
    full_ds = make_dataset(
        eval_files,
        resolution=config.resolution,
        batch_size=MORPH_CHECK_BATCH_SIZE,
        training=False,
        num_labels=num_labels,
    )
    p_base, labels = predict(float32_copy(base), base_ds)
    p_morph, _ = predict(float32_copy(model), full_ds)
    return {
        "auc_before_morph": auc(labels, p_base),
        "auc_after_morph": auc(labels, p_morph),
        "max_abs_diff_at_morph": float(np.max(np.abs(p_base - p_morph))),
    }


def resolution_gain(labels, p_base, p_final, *, base_labels=None) -> dict[str, float]:
    """Eval AUC of MorphHR minus the base's, with DeLong's paired test.

    Both models predict the same eval images in the same (unshuffled) order;
    `base_labels` (the base's pass) is checked against `labels` to prove it.
    For ``[N, L]`` multi-label arrays the AUCs are means over the labels,
    ``delong_p`` is NaN (DeLong's test is per label) and ``per_label``
    holds each label's DeLong result.
    """
    from morphhr_tf.evaluation.metrics import delong_test

    if base_labels is not None and not np.array_equal(labels, base_labels):
        raise ValueError("the base and MorphHR eval passes saw different images")
    if labels.ndim == 2:
        return _multi_label_gain(labels, p_base, p_final)
    if labels.min() == labels.max():
        nan = float("nan")
        return {"difference": nan, "delong_p": nan, "auc_base": nan, "auc_final": nan}
    result = delong_test(labels, p_final, p_base)
    return {
        "auc_base": result.auc_b,
        "auc_final": result.auc_a,
        "difference": result.difference,
        "delong_p": result.p_value,
    }


def _multi_label_gain(labels, p_base, p_final) -> dict:
    """:func:`resolution_gain` of ``[N, L]`` multi-label arrays."""
    from morphhr_tf.evaluation.metrics import delong_test

    per_label = []
    for j in range(labels.shape[1]):
        positives = int(labels[:, j].sum())
        # DeLong's variance needs two cases of each class.
        if min(positives, len(labels) - positives) < 2:
            per_label.append(
                {
                    "auc_base": float("nan"),
                    "auc_final": float("nan"),
                    "difference": float("nan"),
                    "delong_p": float("nan"),
                }
            )
            continue
        result = delong_test(labels[:, j], p_final[:, j], p_base[:, j])
        per_label.append(
            {
                "auc_base": result.auc_b,
                "auc_final": result.auc_a,
                "difference": result.difference,
                "delong_p": result.p_value,
            }
        )
    auc_base, auc_final = auc(labels, p_base), auc(labels, p_final)
    return {
        "auc_base": auc_base,
        "auc_final": auc_final,
        "difference": auc_final - auc_base,
        "delong_p": float("nan"),
        "per_label": per_label,
    }
