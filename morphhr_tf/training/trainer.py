"""The TFX Trainer entry point: ``run_fn(fn_args)``.

Use it in a pipeline as ``Trainer(run_fn="morphhr_tf.training.trainer.run_fn",
custom_config={...})``; the options are documented in
:mod:`morphhr_tf.training.config`.

The MorphHR schedule:

1. Stage 1 trains a ResNet18 *base* at ``base_resolution`` S (images
   area-downsampled, i.e. k x k average pooled) unless pretrained weights are
   given.
2. The base is morphed with :func:`morphhr_tf.models.build_morphhr` to take
   ``resolution`` = k * S inputs. At that instant the morphed model computes
   exactly what the base computed on the pooled image, so the evaluation AUC
   before and after the morph agree (the log shows both). Stage 2 trains it at
   full resolution, the new front at ``learning_rate`` and the base trunk at
   ``learning_rate * trunk_lr_multiplier``.

The ``resnet18`` baseline trains the plain network at ``resolution``.

Multi-worker training (``strategy="multi_worker"``, one process per worker,
the cluster in ``TF_CONFIG``): every worker runs this same program in
lockstep. The input pipelines are seeded and sharded by DATA, so each step
trains on the global batch a single process would see; the morph is
deterministic (the front's random channels come from ``seed``), so every
worker builds the same stage-2 model. Only the chief writes the TensorBoard
logs, the Keras model, the SavedModel and the summary; the other workers save
into temporary folders that are then deleted (saving may run collectives, so
every worker takes part), and wait for the chief before returning.

Outputs: the float32 SavedModel with the serving signatures in
``fn_args.serving_model_dir``, the Keras model in ``<model>/Format-Keras``
(for warm starts), TensorBoard logs and ``training_summary.json`` in
``fn_args.model_run_dir``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.export import export_serving_model, float32_copy
from morphhr_tf.training.input_pipeline import count_labels, make_dataset
from morphhr_tf.training.precision import select_precision
from morphhr_tf.training.schedule import LayerwiseAdamW, make_learning_rate
from morphhr_tf.training.strategy import (
    barrier,
    discard_worker_dir,
    is_chief,
    num_workers,
    select_strategy,
    shard_by_data,
    strategy_name,
    sync_replica_variables,
    task_of,
    worker_dir,
)

KERAS_MODEL_DIR = "Format-Keras"
KERAS_MODEL_FILE = "model.keras"
SUMMARY_FILE = "training_summary.json"


def _log(message: str) -> None:
    print(f"[morphhr trainer] {message}", flush=True)


def keras_model_path(serving_model_dir: str) -> str:
    """Where the Keras model sits beside a Trainer's ``Format-Serving`` dir."""
    model_uri = os.path.dirname(serving_model_dir.rstrip("/"))
    return os.path.join(model_uri, KERAS_MODEL_DIR, KERAS_MODEL_FILE)


def _compile(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc")],
    )


def _evaluate_auc(model: keras.Model, dataset: tf.data.Dataset) -> float:
    probs, labels = _predict(model, dataset)
    return _auc(labels, probs)


def _fit(
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
        callbacks=[keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")],
        verbose=2,
    )
    # Batch-norm statistics: one value on every replica and worker.
    sync_replica_variables(model.non_trainable_variables, strategy)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _predict(model: keras.Model, dataset: tf.data.Dataset) -> tuple:
    probs, labels = [], []
    for images, y in dataset:
        probs.append(np.asarray(model(images, training=False), np.float64).ravel())
        labels.append(np.asarray(y).ravel())
    return np.concatenate(probs), np.concatenate(labels)


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    if labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, probs))


def morph_check(
    base: keras.Model, model: keras.Model, eval_files: list[str], config: TrainingConfig
) -> dict[str, float]:
    """AUC of the base (on pooled images) and of the morphed model, in float32.

    Under a mixed policy the morph is function-preserving only up to the
    compute precision, so the check runs float32 copies of both models: the
    two AUCs agree and the largest probability difference is about 1e-6.
    """
    base_ds = make_dataset(
        eval_files, image_size=config.base_resolution, batch_size=32, training=False
    )
    full_ds = make_dataset(
        eval_files, image_size=config.resolution, batch_size=32, training=False
    )
    p_base, labels = _predict(float32_copy(base), base_ds)
    p_morph, _ = _predict(float32_copy(model), full_ds)
    return {
        "auc_before_morph": _auc(labels, p_base),
        "auc_after_morph": _auc(labels, p_morph),
        "max_abs_diff_at_morph": float(np.max(np.abs(p_base - p_morph))),
    }


def _build_base(config: TrainingConfig, size: int) -> keras.Model:
    from morphhr_tf.models import resnet18

    return resnet18(
        input_shape=(size, size, 1),
        width=config.width,
        include_top=True,
        num_classes=1,
    )


def _pretrained_base(config: TrainingConfig, size: int) -> keras.Model:
    """The base ResNet18 with the weights ``config.pretrained`` names."""
    path = config.pretrained
    if path.endswith(".weights.h5"):
        base = _build_base(config, size)
        base.load_weights(path)
        return base
    if os.path.isdir(path):
        import keras_hub

        from morphhr_tf.models import import_keras_hub_resnet, resnet18
        from morphhr_tf.morph import collapse_input_channels

        backbone = keras_hub.models.ResNetBackbone.from_preset(path)
        base3 = resnet18(input_shape=(size, size, 3), width=config.width, num_classes=1)
        import_keras_hub_resnet(base3, backbone)
        return collapse_input_channels(base3)
    raise ValueError(
        "pretrained must be '', 'base_model', a .weights.h5 file or a directory "
        f"holding a keras-hub ResNetBackbone preset. Received: {path!r}"
    )


def train(
    config: TrainingConfig,
    *,
    train_files: list[str],
    eval_files: list[str],
    steps: int,
    log_dir: str,
    strategy: tf.distribute.Strategy,
    base_model_path: str | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Trains the configured model; returns it with a summary dict.

    Args:
        config: the training options.
        train_files, eval_files: TFRecord globs.
        steps: optimizer steps of the final stage.
        log_dir: TensorBoard root (one subdirectory per stage).
        strategy: the distribution strategy.
        base_model_path: a ``.keras`` file to warm start from when
            ``config.pretrained == "base_model"``.

    Returns:
        ``(model, summary)``; ``summary`` holds the AUCs per stage.
    """
    summary: dict[str, Any] = {}
    eval_counts = count_labels(eval_files)
    if sum(eval_counts) == 0:
        raise ValueError(
            f"The eval split {eval_files} holds no examples: ingest more patients "
            "or raise eval_fraction."
        )
    counts = count_labels(train_files)
    summary["train_label_counts"] = {"negative": counts[0], "positive": counts[1]}
    _log(
        f"training split: {counts[0]} negatives, {counts[1]} positives; "
        f"eval split: {eval_counts[0]} negatives, {eval_counts[1]} positives"
    )

    replicas = strategy.num_replicas_in_sync
    n_eval = sum(eval_counts)
    # Keras' validation under several replicas needs full batches; the AUCs
    # logged here (and the Evaluator's) use every eval example.
    val_steps = (
        n_eval // config.batch_size if replicas > 1 else -(-n_eval // config.batch_size)
    )

    def datasets(size: int):
        train_ds = make_dataset(
            train_files,
            image_size=size,
            batch_size=config.batch_size,
            training=True,
            balance=config.balance,
            augment=config.augment,
            seed=config.seed,
            label_counts=counts,
        )
        train_ds = shard_by_data(train_ds, strategy)
        eval_ds = make_dataset(
            eval_files, image_size=size, batch_size=config.batch_size, training=False
        )
        # Repeated: Keras keeps one validation iterator across epochs and
        # takes exactly val_steps batches (one pass) from it each epoch.
        val_ds = make_dataset(
            eval_files,
            image_size=size,
            batch_size=config.batch_size,
            training=False,
            drop_remainder=replicas > 1,
        ).repeat()
        val_ds = shard_by_data(val_ds, strategy)
        return train_ds, eval_ds, (val_ds, val_steps)

    def optimizer(
        n_steps: int, peak: float | None = None, **kwargs
    ) -> keras.optimizers.Optimizer:
        lr = make_learning_rate(
            peak or config.learning_rate,
            n_steps,
            kind=config.schedule,
            warmup_fraction=config.warmup_fraction,
        )
        return LayerwiseAdamW(
            learning_rate=lr, weight_decay=config.weight_decay, **kwargs
        )

    if config.pretrained == "base_model" and base_model_path:
        _log(f"warm start from the previous model {base_model_path}")
        train_ds, eval_ds, val_ds = datasets(config.resolution)
        with strategy.scope():
            model = keras.saving.load_model(base_model_path, compile=False)
            _compile(model, optimizer(steps))
        summary["auc_warm_start"] = _evaluate_auc(model, eval_ds)
        summary["history"] = _fit(
            model,
            train_ds,
            val_ds,
            steps=steps,
            epochs=config.epochs,
            log_dir=os.path.join(log_dir, "warm_start"),
            strategy=strategy,
        )
        summary["auc_final"] = _evaluate_auc(model, eval_ds)
        return model, summary
    if config.pretrained == "base_model":
        _log("pretrained='base_model' but the Trainer has no base_model input")

    base_size = (
        config.base_resolution if config.model == "morphhr" else config.resolution
    )
    with strategy.scope():
        if config.pretrained and config.pretrained != "base_model":
            base = _pretrained_base(config, base_size)
            _log(f"base weights from {config.pretrained}")
        else:
            base = _build_base(config, base_size)

    base_steps = steps if config.model == "resnet18" else config.base_steps
    pretrained = bool(config.pretrained) and config.pretrained != "base_model"
    train_ds, eval_ds, val_ds = datasets(base_size)
    if base_steps and not (pretrained and config.model == "morphhr"):
        with strategy.scope():
            _compile(base, optimizer(base_steps))
        _log(f"stage 1: {config.model} base at {base_size} px, {base_steps} steps")
        start = time.time()
        summary["stage1_history"] = _fit(
            base,
            train_ds,
            val_ds,
            steps=base_steps,
            epochs=config.epochs,
            log_dir=os.path.join(log_dir, "stage1_base"),
            strategy=strategy,
        )
        summary["stage1_seconds"] = round(time.time() - start, 1)
    else:
        with strategy.scope():
            _compile(base, optimizer(max(steps, 1)))
    p_base, base_labels = _predict(base, eval_ds)
    summary["auc_base"] = _auc(base_labels, p_base)
    _log(f"eval AUC of the base at {base_size} px: {summary['auc_base']:.4f}")
    if config.model == "resnet18":
        summary["auc_final"] = summary["auc_base"]
        return base, summary

    from morphhr_tf.models import build_morphhr

    trunk_layers = {v.path.split("/")[0] for v in base.weights}
    train_ds, eval_ds, val_ds = datasets(config.resolution)
    with strategy.scope():
        model = build_morphhr(
            base,
            config.resolution,
            front_channels=config.front_channels,
            front_blocks=config.front_blocks,
            detail_branch=(
                None if config.detail_branch == "none" else config.detail_branch
            ),
            # Every worker (and every rerun) must draw the same front.
            seed=config.seed,
        )
        front = {
            v.path.split("/")[0]
            for v in model.trainable_weights
            if v.path.split("/")[0] not in trunk_layers
        }
        _compile(
            model,
            optimizer(
                steps,
                config.morph_learning_rate or config.learning_rate,
                lr_multipliers=dict.fromkeys(front, 1.0),
                default_multiplier=config.trunk_lr_multiplier,
            ),
        )
    check = morph_check(base, model, eval_files, config)
    summary.update(check)
    _log(
        f"morph to {config.resolution} px (k={config.scale}), checked in float32 on "
        f"the eval split: AUC before the morph {check['auc_before_morph']:.4f}, "
        f"right after it {check['auc_after_morph']:.4f}, max |p_morphhr(x) - "
        f"p_base(avg_pool(x))| = {check['max_abs_diff_at_morph']:.2e}; "
        f"new front layers: {sorted(front)}"
    )
    _log(f"stage 2: MorphHR at {config.resolution} px, {steps} steps")
    start = time.time()
    summary["stage2_history"] = _fit(
        model,
        train_ds,
        val_ds,
        steps=steps,
        epochs=config.epochs,
        log_dir=os.path.join(log_dir, "stage2_morphhr"),
        strategy=strategy,
    )
    summary["stage2_seconds"] = round(time.time() - start, 1)
    p_final, labels = _predict(model, eval_ds)
    summary["auc_final"] = _auc(labels, p_final)
    summary["resolution_gain"] = resolution_gain(
        labels, p_base, p_final, base_labels=base_labels
    )
    gain = summary["resolution_gain"]
    _log(
        f"eval AUC after stage 2: {summary['auc_final']:.4f} at {config.resolution} px "
        f"against the base's {summary['auc_base']:.4f} at {base_size} px: "
        f"{gain['difference']:+.4f}, DeLong p = {gain['delong_p']:.3g}"
    )
    return model, summary


def resolution_gain(labels, p_base, p_final, *, base_labels=None) -> dict[str, float]:
    """Eval AUC of MorphHR minus the base's, with DeLong's paired test.

    Both models predict the same eval images in the same (unshuffled) order;
    `base_labels` (the base's pass) is checked against `labels` to prove it.
    """
    from morphhr_tf.evaluation.metrics import delong_test

    if base_labels is not None and not np.array_equal(labels, base_labels):
        raise ValueError("the base and MorphHR eval passes saw different images")
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


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (generic trainer, ``run_fn``).

    Under ``strategy="multi_worker"`` every worker of the ``TF_CONFIG``
    cluster calls it with the same ``fn_args``; only the chief's outputs
    land in ``serving_model_dir`` and ``model_run_dir``, and every worker
    returns once the chief has written them.

    Args:
        fn_args: ``tfx.components.FnArgs``; uses ``train_files``,
            ``eval_files``, ``train_steps``, ``custom_config``,
            ``serving_model_dir``, ``model_run_dir`` and ``base_model``.

    Raises:
        ValueError: for invalid options (see ``TrainingConfig``).
    """
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    # First: MultiWorkerMirroredStrategy must exist before any other TF op.
    strategy = select_strategy(config.strategy)
    steps = int(fn_args.train_steps or 100)
    policy = select_precision(config.precision)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(config.seed)
    # Non-chief workers write into temporary folders, deleted at the end.
    serving_model_dir = worker_dir(fn_args.serving_model_dir, strategy)
    model_run_dir = worker_dir(fn_args.model_run_dir, strategy)
    try:
        _log(
            f"model={config.model} precision={config.precision}->{policy} "
            f"strategy={config.strategy}->{strategy_name(strategy)} "
            f"replicas={strategy.num_replicas_in_sync} "
            f"workers={num_workers(strategy)} task={task_of(strategy)} "
            f"chief={is_chief(strategy)}"
        )
        base_model_path = None
        if fn_args.base_model:
            candidate = keras_model_path(fn_args.base_model)
            base_model_path = candidate if tf.io.gfile.exists(candidate) else None
        start = time.time()
        model, summary = train(
            config,
            train_files=fn_args.train_files,
            eval_files=fn_args.eval_files,
            steps=steps,
            log_dir=model_run_dir,
            strategy=strategy,
            base_model_path=base_model_path,
        )
        summary.update(
            config=config.to_dict(),
            precision=policy,
            strategy=strategy_name(strategy),
            replicas=strategy.num_replicas_in_sync,
            workers=num_workers(strategy),
            task=task_of(strategy),
            train_seconds=round(time.time() - start, 1),
        )
        keras_path = keras_model_path(serving_model_dir)
        tf.io.gfile.makedirs(os.path.dirname(keras_path))
        model.save(keras_path)
        keras.config.set_dtype_policy(previous_policy)
        export_serving_model(model, serving_model_dir, config.resolution)
        tf.io.gfile.makedirs(model_run_dir)
        with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
        # The Trainer checks serving_model_dir on every worker: leave only
        # once the chief has written it.
        barrier(strategy)
    finally:
        keras.config.set_dtype_policy(previous_policy)
        discard_worker_dir(serving_model_dir, strategy)
        discard_worker_dir(model_run_dir, strategy)
    if is_chief(strategy):
        _log(f"exported the float32 SavedModel to {serving_model_dir}")
