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

from morphhr_tf.training.checks import (
    auc,
    evaluate_auc,
    morph_check,
    per_label_auc,
    predict,
    resolution_gain,
)
from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.export import export_serving_model
from morphhr_tf.training.finalize import finalize
from morphhr_tf.training.precision import select_precision
from morphhr_tf.training.stages import (
    Splits,
    compile_layerwise,
    make_datasets,
    read_splits,
    train_stage,
)
from morphhr_tf.training.stages import log as _log
from morphhr_tf.training.strategy import (
    barrier,
    discard_worker_dir,
    is_chief,
    num_workers,
    select_strategy,
    strategy_name,
    task_of,
    worker_dir,
)

__all__ = [
    "KERAS_MODEL_DIR",
    "KERAS_MODEL_FILE",
    "SUMMARY_FILE",
    "keras_model_path",
    "morph",
    "morph_check",
    "resolution_gain",
    "run_fn",
    "train",
    "train_base",
    "train_morphhr",
    "train_stage",
    "warm_start",
]

KERAS_MODEL_DIR = "Format-Keras"
KERAS_MODEL_FILE = "model.keras"
SUMMARY_FILE = "training_summary.json"
# Optimizer steps of the final stage when the Trainer's train_args set none
# (fn_args.train_steps is then None or 0).
DEFAULT_TRAIN_STEPS = 100


def keras_model_path(serving_model_dir: str) -> str:
    """Where the Keras model sits beside a Trainer's ``Format-Serving`` dir."""
    model_uri = os.path.dirname(serving_model_dir.rstrip("/"))
    return os.path.join(model_uri, KERAS_MODEL_DIR, KERAS_MODEL_FILE)


def _build_base(config: TrainingConfig, resolution: int) -> keras.Model:
    from morphhr_tf.models import resnet18

    return resnet18(
        input_shape=(resolution, resolution, 1),
        width=config.width,
        include_top=True,
        num_classes=config.num_outputs,
        multi_label=config.task == "multilabel",
    )


def _pretrained_base(config: TrainingConfig, resolution: int) -> keras.Model:
    """The base ResNet18 with the weights ``config.pretrained`` names."""
    path = config.pretrained
    if path.endswith(".weights.h5"):
        base = _build_base(config, resolution)
        base.load_weights(path)
        return base
    if os.path.isdir(path):
        import keras_hub

        from morphhr_tf.models import import_keras_hub_resnet, resnet18
        from morphhr_tf.morph import collapse_input_channels

        backbone = keras_hub.models.ResNetBackbone.from_preset(path)
        base3 = resnet18(
            input_shape=(resolution, resolution, 3),
            width=config.width,
            num_classes=config.num_outputs,
            multi_label=config.task == "multilabel",
        )
        import_keras_hub_resnet(base3, backbone)
        return collapse_input_channels(base3)
    raise ValueError(
        "pretrained must be '', 'base_model', a .weights.h5 file or a directory "
        f"holding a keras-hub ResNetBackbone preset. Received: {path!r}"
    )


def warm_start(
    config: TrainingConfig,
    splits: Splits,
    strategy: tf.distribute.Strategy,
    *,
    steps: int,
    log_dir: str,
    base_model_path: str,
) -> tuple[keras.Model, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Trains the previous run's Keras model further at ``config.resolution``.

    Returns:
        ``(model, summary, (probabilities, labels))``: the last is the
        trained model's eval pass.
    """
    _log(f"warm start from the previous model {base_model_path}")
    datasets = make_datasets(splits, config.resolution, config, strategy)
    with strategy.scope():
        model = keras.saving.load_model(base_model_path, compile=False)
    summary: dict[str, Any] = {"auc_warm_start": evaluate_auc(model, datasets[1])}
    stage_dir = os.path.join(log_dir, "warm_start")
    summary["history"], _ = train_stage(
        model,
        datasets,
        config,
        strategy,
        steps=steps,
        log_dir=stage_dir,
        loss=splits.loss(config),
    )
    p_final, labels = predict(model, datasets[1])
    summary["auc_final"] = auc(labels, p_final)
    return model, summary, (p_final, labels)


def train_base(
    config: TrainingConfig,
    splits: Splits,
    strategy: tf.distribute.Strategy,
    *,
    steps: int,
    log_dir: str,
) -> tuple[keras.Model, tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """Stage 1: builds (or loads) the base and trains it unless pretrained.

    The ``resnet18`` baseline is this stage alone, at ``config.resolution``
    for ``steps`` steps; for ``morphhr`` the base works at
    ``config.base_resolution`` for ``config.base_steps`` steps.

    Returns:
        ``(base, (probabilities, labels), summary)``: the base's eval pass.
    """
    morphhr = config.model == "morphhr"
    base_resolution = config.base_resolution if morphhr else config.resolution
    pretrained = bool(config.pretrained) and config.pretrained != "base_model"
    with strategy.scope():
        if pretrained:
            base = _pretrained_base(config, base_resolution)
            _log(f"base weights from {config.pretrained}")
        else:
            base = _build_base(config, base_resolution)
    base_steps = steps if config.model == "resnet18" else config.base_steps
    datasets = make_datasets(splits, base_resolution, config, strategy)
    summary: dict[str, Any] = {}
    if base_steps and not (pretrained and morphhr):
        _log(
            f"stage 1: {config.model} base at {base_resolution} px, {base_steps} steps"
        )
        stage_dir = os.path.join(log_dir, "stage1_base")
        history, seconds = train_stage(
            base,
            datasets,
            config,
            strategy,
            steps=base_steps,
            log_dir=stage_dir,
            loss=splits.loss(config),
        )
        summary.update(stage1_history=history, stage1_seconds=seconds)
    else:
        with strategy.scope():
            compile_layerwise(base, config, max(steps, 1), loss=splits.loss(config))
    p_base, base_labels = predict(base, datasets[1])
    summary["auc_base"] = auc(base_labels, p_base)
    if config.task == "multilabel":
        summary["per_label_auc_base"] = dict(
            zip(config.label_list, per_label_auc(base_labels, p_base), strict=True)
        )
    _log(f"eval AUC of the base at {base_resolution} px: {summary['auc_base']:.4f}")
    return base, (p_base, base_labels), summary


def morph(
    base: keras.Model,
    config: TrainingConfig,
    splits: Splits,
    strategy: tf.distribute.Strategy,
) -> tuple[keras.Model, set[str], dict[str, float]]:
    """Morphs ``base`` to ``config.resolution`` and checks the morph in float32.

    Returns:
        ``(model, front, check)``: the MorphHR model, the names of its new
        layers with trainable weights, and :func:`morph_check`'s summary part.
    """
    from morphhr_tf.models import build_morphhr
    from morphhr_tf.models.morphhr import added_layers

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
    front = added_layers(model)
    check = morph_check(base, model, splits.eval_files, config)
    _log(
        f"morph to {config.resolution} px (k={config.scale}), checked in float32 on "
        f"the eval split: AUC before the morph {check['auc_before_morph']:.4f}, "
        f"right after it {check['auc_after_morph']:.4f}, max |p_morphhr(x) - "
        f"p_base(avg_pool(x))| = {check['max_abs_diff_at_morph']:.2e}; "
        f"new front layers: {sorted(front)}"
    )
    return model, front, check


def _training_view(
    model: keras.Model, config: TrainingConfig, strategy: tf.distribute.Strategy
) -> keras.Model:
    """What stage 2 fits: ``model``, or a view of it (same layers and
    variables, built under ``strategy`` as the model was) that recomputes
    the front in the backward pass (:func:`recompute_front`). The
    P-activations get ``config.xla_activations``."""
    from morphhr_tf.layers.p_activation import set_xla_kernels
    from morphhr_tf.models.rematerialize import recompute_front

    set_xla_kernels(model, config.xla_activations)
    if not config.xla_activations:
        _log("stage 2 trains the P-activations with TensorFlow's ops, not XLA")
    if not config.rematerialize_front:
        return model
    if config.front_blocks == 0:
        _log("rematerialize_front: the front has no block; nothing to recompute")
        return model
    chunks = config.front_recompute_chunks
    if chunks == 1:
        _log(
            "stage 2 recomputes the front's first block in the backward pass "
            "instead of keeping its full-resolution output"
        )
    else:
        _log(
            "stage 2 recomputes the front and the downsampler in the backward "
            f"pass, {chunks} slices of the batch in turn, instead of keeping "
            "their full-resolution activations"
        )
    if config.slice_detail_blocks and chunks > 1:
        _log(
            "... and trains the detail branch's full-resolution blocks keeping "
            "only pooled tensors (slice_detail_blocks)"
        )
    with strategy.scope():
        return recompute_front(model, chunks, detail_blocks=config.slice_detail_blocks)


def train_morphhr(
    model: keras.Model,
    front: set[str],
    datasets: tuple,
    base_eval: tuple[np.ndarray, np.ndarray],
    config: TrainingConfig,
    strategy: tf.distribute.Strategy,
    *,
    steps: int,
    log_dir: str,
    loss: keras.losses.Loss | None = None,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Stage 2: the front at the morph learning rate, the trunk at a fraction.

    ``base_eval`` is the base's eval pass, compared with MorphHR's after it;
    ``loss`` the training loss (``Splits.loss``).

    Returns:
        ``(summary, (probabilities, labels))``: the last is the trained
        model's eval pass.
    """
    _log(f"stage 2: MorphHR at {config.resolution} px, {steps} steps")
    view = _training_view(model, config, strategy)
    history, seconds = train_stage(
        view,
        datasets,
        config,
        strategy,
        steps=steps,
        log_dir=os.path.join(log_dir, "stage2_morphhr"),
        peak=config.morph_learning_rate or config.learning_rate,
        loss=loss,
        lr_multipliers=dict.fromkeys(front, 1.0),
        default_multiplier=config.trunk_lr_multiplier,
        # The view lists the variables in another order (its sliced blocks
        # group each detector's); the optimizer follows the model's.
        variables=model.trainable_variables,
    )
    if view is not model:
        # The saved Keras model keeps its optimizer (and state), as when the
        # model itself is fitted.
        with strategy.scope():
            model.compile(optimizer=view.optimizer, loss=view.loss)
    p_base, base_labels = base_eval
    p_final, labels = predict(model, datasets[1])
    gain = resolution_gain(labels, p_base, p_final, base_labels=base_labels)
    summary = {
        "stage2_history": history,
        "stage2_seconds": seconds,
        "auc_final": gain["auc_final"],
        "resolution_gain": gain,
    }
    if "per_label" in gain:
        summary["per_label_auc"] = {
            name: part["auc_final"]
            for name, part in zip(config.label_list, gain["per_label"], strict=True)
        }
    _log(
        f"eval AUC after stage 2: {summary['auc_final']:.4f} at {config.resolution} px "
        f"against the base's {gain['auc_base']:.4f} at "
        f"{config.base_resolution} px: "
        f"{gain['difference']:+.4f}, DeLong p = {gain['delong_p']:.3g}"
    )
    return summary, (p_final, labels)


def train(
    config: TrainingConfig,
    *,
    train_files: list[str],
    eval_files: list[str],
    steps: int,
    log_dir: str,
    strategy: tf.distribute.Strategy,
    base_model_path: str | None = None,
) -> tuple[keras.Model, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Trains the configured model; returns it with a summary dict and its
    eval pass.

    Args:
        config: the training options.
        train_files, eval_files: TFRecord globs.
        steps: optimizer steps of the final stage.
        log_dir: TensorBoard root (one subdirectory per stage).
        strategy: the distribution strategy.
        base_model_path: a ``.keras`` file to warm start from when
            ``config.pretrained == "base_model"``.

    Returns:
        ``(model, summary, (probabilities, labels))``: ``summary`` holds the
        AUCs per stage; the last is the trained model's pass over the eval
        split in record order (:func:`~morphhr_tf.training.checks.predict`),
        which :func:`~morphhr_tf.training.finalize.finalize` reuses.
    """
    splits, summary = read_splits(config, strategy, train_files, eval_files)
    run = dict(steps=steps, log_dir=log_dir)
    if config.pretrained == "base_model" and base_model_path:
        model, part, eval_pass = warm_start(
            config, splits, strategy, base_model_path=base_model_path, **run
        )
        return model, {**summary, **part}, eval_pass
    if config.pretrained == "base_model":
        _log("pretrained='base_model' but the Trainer has no base_model input")
    base, base_eval, part = train_base(config, splits, strategy, **run)
    summary.update(part)
    if config.model == "resnet18":
        summary["auc_final"] = summary["auc_base"]
        if "per_label_auc_base" in summary:
            summary["per_label_auc"] = summary["per_label_auc_base"]
        return base, summary, base_eval
    # Built before the morph, as the datasets always were.
    datasets = make_datasets(splits, config.resolution, config, strategy)
    model, front, check = morph(base, config, splits, strategy)
    summary.update(check)
    part, eval_pass = train_morphhr(
        model,
        front,
        datasets,
        base_eval,
        config,
        strategy,
        loss=splits.loss(config),
        **run,
    )
    summary.update(part)
    return model, summary, eval_pass


def _save_outputs(
    model: keras.Model,
    summary: dict[str, Any],
    config: TrainingConfig,
    serving_model_dir: str,
    model_run_dir: str,
    final: dict[str, Any],
) -> None:
    """Writes the Keras model, the model card, the float32 SavedModel (with
    the calibration and operating points of :func:`finalize`) and the summary."""
    keras_path = keras_model_path(serving_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(keras_path))
    model.save(keras_path)
    write_model_card(final["model_card"], serving_model_dir)
    export_serving_model(
        model,
        serving_model_dir,
        label_names=config.label_list or None,
        calibration=final["calibration"],
        operating_points=final["operating_points"],
    )
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)


def write_model_card(card: dict[str, Any], serving_model_dir: str) -> list[str]:
    """Writes the model card (Markdown and JSON) into the SavedModel's
    ``assets.extra``, which the Pusher delivers with the model."""
    from morphhr_tf.evaluation.model_card import (
        JSON_FILE,
        MARKDOWN_FILE,
        render_markdown,
    )

    folder = os.path.join(serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(folder)
    paths = []
    for name, text in (
        (MARKDOWN_FILE, render_markdown(card)),
        (JSON_FILE, json.dumps(card, indent=1, allow_nan=False)),
    ):
        path = os.path.join(folder, name)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text + "\n")
        paths.append(path)
    return paths


def _base_model_path(fn_args) -> str | None:
    """The previous run's Keras model, if the Trainer got one that has it."""
    if not fn_args.base_model:
        return None
    candidate = keras_model_path(fn_args.base_model)
    return candidate if tf.io.gfile.exists(candidate) else None


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
    steps = int(fn_args.train_steps or DEFAULT_TRAIN_STEPS)
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
        base_model_path = _base_model_path(fn_args)
        start = time.time()
        model, summary, eval_pass = train(
            config,
            train_files=fn_args.train_files,
            eval_files=fn_args.eval_files,
            steps=steps,
            log_dir=model_run_dir,
            strategy=strategy,
            base_model_path=base_model_path,
        )
        summary.update(
            config=config.to_custom_config(),
            precision=policy,
            strategy=strategy_name(strategy),
            replicas=strategy.num_replicas_in_sync,
            workers=num_workers(strategy),
            task=task_of(strategy),
            train_seconds=round(time.time() - start, 1),
        )
        keras.config.set_dtype_policy(previous_policy)
        final = finalize(
            model, summary, config, fn_args.eval_files, eval_pass=eval_pass
        )
        _save_outputs(model, summary, config, serving_model_dir, model_run_dir, final)
        # The Trainer checks serving_model_dir on every worker: leave only
        # once the chief has written it.
        barrier(strategy)
    finally:
        keras.config.set_dtype_policy(previous_policy)
        discard_worker_dir(serving_model_dir, strategy)
        discard_worker_dir(model_run_dir, strategy)
    if is_chief(strategy):
        _log(f"exported the float32 SavedModel to {serving_model_dir}")
