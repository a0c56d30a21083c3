"""One training stage of the trainer: its data, the layer-wise optimizer, the fit.

:func:`read_splits` counts the labels once; :func:`make_datasets` builds the
training, eval and validation datasets at one resolution;
:func:`train_stage` compiles a model with :class:`LayerwiseAdamW` (the
per-layer learning rates of the MorphHR stage 2) and fits it, one TensorBoard
folder per stage. Used by :mod:`morphhr_tf.training.trainer`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import keras
import tensorflow as tf

from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.input_pipeline import (
    count_label_matrix,
    count_labels,
    make_dataset,
)
from morphhr_tf.training.losses import (
    LabelWeightedBinaryCrossentropy,
    balancing_weights,
    unbalanceable_labels,
)
from morphhr_tf.training.onednn_fault import check_pointwise_gradient_fault
from morphhr_tf.training.schedule import LayerwiseAdamW, make_learning_rate
from morphhr_tf.training.strategy import shard_by_data, sync_replica_variables


def log(message: str) -> None:
    """Prints one line of the trainer's log."""
    print(f"[morphhr trainer] {message}", flush=True)


@dataclasses.dataclass(frozen=True)
class Splits:
    """The training and eval files with what the stages need to know of them.

    Attributes:
        train_files, eval_files: TFRecord globs.
        train_counts: ``(negatives, positives)`` of the training split (of
            the binary ``label``: any finding, for the multilabel task).
        val_steps: batches of one Keras validation pass over the eval split.
        label_positives: the multilabel task's positives per label in the
            training split (``()`` for the binary task).
    """

    train_files: list[str]
    eval_files: list[str]
    train_counts: tuple[int, int]
    val_steps: int
    label_positives: tuple[int, ...] = ()

    def loss(self, config: TrainingConfig) -> keras.losses.Loss:
        """The training loss: binary cross-entropy, weighted per label for
        the multilabel task with ``balance="class_weight"``."""
        if config.task == "multilabel" and config.balance == "class_weight":
            pos_w, neg_w = balancing_weights(
                sum(self.train_counts), self.label_positives
            )
            return LabelWeightedBinaryCrossentropy(pos_w, neg_w)
        return keras.losses.BinaryCrossentropy()


def read_splits(
    config: TrainingConfig,
    strategy: tf.distribute.Strategy,
    train_files: list[str],
    eval_files: list[str],
) -> tuple[Splits, dict[str, Any]]:
    """Counts the labels of both splits; returns them with the summary part."""
    eval_counts = count_labels(eval_files)
    if sum(eval_counts) == 0:
        raise ValueError(
            f"The eval split {eval_files} holds no examples: ingest more patients "
            "or raise eval_fraction."
        )
    counts = count_labels(train_files)
    log(
        f"training split: {counts[0]} negatives, {counts[1]} positives; "
        f"eval split: {eval_counts[0]} negatives, {eval_counts[1]} positives"
    )
    n_eval = sum(eval_counts)
    # Keras' validation under several replicas needs full batches; the AUCs
    # logged here (and the Evaluator's) use every eval example.
    if strategy.num_replicas_in_sync > 1:
        val_steps = n_eval // config.batch_size
    else:
        val_steps = -(-n_eval // config.batch_size)
    summary = {"train_label_counts": {"negative": counts[0], "positive": counts[1]}}
    positives: tuple[int, ...] = ()
    if config.task == "multilabel":
        n, per_label = count_label_matrix(train_files, config.num_outputs)
        count_label_matrix(eval_files, config.num_outputs)  # raises if unlabelled
        positives = tuple(per_label)
        summary["train_label_positives"] = dict(
            zip(config.label_list, positives, strict=True)
        )
        log(
            "training split positives per label: "
            + ", ".join(f"{k} {v}" for k, v in summary["train_label_positives"].items())
        )
        lacking = [config.label_list[j] for j in unbalanceable_labels(n, positives)]
        if lacking:
            summary["labels_lacking_a_class"] = lacking
            log(
                f"labels with no positive (or no negative) training image: {lacking}; "
                "they are not weighted and cannot be learned from this split"
            )
    splits = Splits(train_files, eval_files, counts, val_steps, positives)
    return splits, summary


def make_datasets(
    splits: Splits,
    resolution: int,
    config: TrainingConfig,
    strategy: tf.distribute.Strategy,
) -> tuple[tf.data.Dataset, tf.data.Dataset, tuple[tf.data.Dataset, int]]:
    """``(train, eval, (validation, val_steps))`` datasets of ``resolution`` px images."""
    replicas = strategy.num_replicas_in_sync
    num_labels = config.num_outputs if config.task == "multilabel" else None
    train_ds = make_dataset(
        splits.train_files,
        resolution=resolution,
        batch_size=config.batch_size,
        training=True,
        # The multilabel task balances in its loss (Splits.loss).
        balance="none" if num_labels else config.balance,
        augment=config.augment,
        seed=config.seed,
        label_counts=splits.train_counts,
        num_labels=num_labels,
    )
    train_ds = shard_by_data(train_ds, strategy)
    eval_ds = make_dataset(
        splits.eval_files,
        resolution=resolution,
        batch_size=config.batch_size,
        training=False,
        num_labels=num_labels,
    )
    # Repeated: Keras keeps one validation iterator across epochs and
    # takes exactly val_steps batches (one pass) from it each epoch.
    val_ds = make_dataset(
        splits.eval_files,
        resolution=resolution,
        batch_size=config.batch_size,
        training=False,
        drop_remainder=replicas > 1,
        num_labels=num_labels,
    ).repeat()
    val_ds = shard_by_data(val_ds, strategy)
    return train_ds, eval_ds, (val_ds, splits.val_steps)


def compile_layerwise(
    model: keras.Model,
    config: TrainingConfig,
    n_steps: int,
    peak: float | None = None,
    *,
    loss: keras.losses.Loss | None = None,
    **kwargs,
) -> None:
    """Compiles ``model`` with the layer-wise AdamW over ``n_steps`` steps.

    ``peak`` is the peak learning rate (``config.learning_rate`` when unset);
    ``loss`` the training loss (:meth:`Splits.loss`; binary cross-entropy
    when unset); ``kwargs`` go to :class:`LayerwiseAdamW` (the per-layer
    multipliers). The ``auc`` metric is the mean over labels for the
    multilabel task.

    Raises:
        ValueError: TensorFlow's oneDNN kernels would corrupt memory training
            ``model`` at ``config.batch_size`` over the current strategy's
            replicas (:mod:`morphhr_tf.training.onednn_fault`).
    """
    check_pointwise_gradient_fault(
        model, config.batch_size, tf.distribute.get_strategy().num_replicas_in_sync
    )
    lr = make_learning_rate(
        peak or config.learning_rate,
        n_steps,
        kind=config.schedule,
        warmup_fraction=config.warmup_fraction,
    )
    model.compile(
        optimizer=LayerwiseAdamW(
            learning_rate=lr, weight_decay=config.weight_decay, **kwargs
        ),
        loss=loss or keras.losses.BinaryCrossentropy(),
        metrics=[
            keras.metrics.AUC(
                name="auc",
                multi_label=config.task == "multilabel",
                num_labels=config.num_outputs if config.task == "multilabel" else None,
            )
        ],
    )


#: TensorBoard gets about this many points per stage (``batch_loss``, ...),
#: besides the per-epoch ``epoch_*`` scalars.
TENSORBOARD_POINTS = 50


def tensorboard_every(steps: int) -> int:
    """The TensorBoard callback's ``update_freq`` for a stage of ``steps``
    steps: a scalar every that many batches, about :data:`TENSORBOARD_POINTS`
    per stage."""
    return max(1, steps // TENSORBOARD_POINTS)


def fit(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tuple[tf.data.Dataset, int],
    *,
    steps: int,
    epochs: int,
    log_dir: str,
    strategy: tf.distribute.Strategy,
) -> dict[str, list[float]]:
    epochs = max(1, min(epochs, steps))
    val_data, val_steps = val_ds
    history = model.fit(
        train_ds,
        steps_per_epoch=max(1, steps // epochs),
        epochs=epochs,
        validation_data=val_data if val_steps else None,
        validation_steps=val_steps or None,
        # The datasets are shuffled by the input pipeline; Keras' default
        # shuffle=True only warns that it ignores itself for a tf.data input.
        shuffle=False,
        callbacks=[
            keras.callbacks.TensorBoard(
                log_dir=log_dir, update_freq=tensorboard_every(steps)
            )
        ],
        verbose=2,
    )
    # Batch-norm statistics: one value on every replica and worker.
    sync_replica_variables(model.non_trainable_variables, strategy)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def train_stage(
    model: keras.Model,
    datasets: tuple,
    config: TrainingConfig,
    strategy: tf.distribute.Strategy,
    *,
    steps: int,
    log_dir: str,
    peak: float | None = None,
    loss: keras.losses.Loss | None = None,
    variables: list | None = None,
    **optimizer_kwargs,
) -> tuple[dict[str, list[float]], float]:
    """Compiles ``model`` with the layer-wise optimizer and fits it.

    Args:
        model: the model, built under ``strategy``.
        datasets: ``make_datasets(...)`` at the model's resolution.
        config, strategy: as for :func:`train`.
        steps: optimizer steps.
        log_dir: this stage's TensorBoard folder.
        peak, optimizer_kwargs: the peak learning rate and the
            :class:`LayerwiseAdamW` multipliers.
        loss: the training loss (:meth:`Splits.loss`).
        variables: the variables to build the optimizer on, in their order
            (default: ``model``'s, when it first applies gradients). A view
            that trains another model's layers passes that model's, so that
            the optimizer's state lines up with the saved model's variables.

    Returns:
        ``(history, seconds)``: the Keras history and the fit's duration.
    """
    with strategy.scope():
        compile_layerwise(model, config, steps, peak, loss=loss, **optimizer_kwargs)
        if variables is not None:
            model.optimizer.build(variables)
    train_ds, _, val_ds = datasets
    start = time.time()
    history = fit(
        model,
        train_ds,
        val_ds,
        steps=steps,
        epochs=config.epochs,
        log_dir=log_dir,
        strategy=strategy,
    )
    return history, round(time.time() - start, 1)
