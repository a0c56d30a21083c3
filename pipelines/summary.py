"""Reads a finished local pipeline run back from ML Metadata and summarizes it.

Used by ``local_runner.py`` for its closing summary and by the end-to-end
test: data counts, AUC overall and per slice, the blessing, where the pushed
model, the TensorBoard logs and the ROC curve are.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from morphhr_tf.data import features as F

_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


def open_store(metadata_path: str) -> mlmd.MetadataStore:
    """An MLMD store on a sqlite file (read/write, as TFX opens it)."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    )
    return mlmd.MetadataStore(config)


def node_executions(
    store: mlmd.MetadataStore, pipeline_name: str, node_id: str
) -> list[metadata_store_pb2.Execution]:
    """Executions of one pipeline node, oldest first."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return []
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def execution_state(execution: metadata_store_pb2.Execution) -> str:
    """``COMPLETE``, ``CACHED``, ``FAILED``, ..."""
    return _STATES.get(execution.last_known_state, str(execution.last_known_state))


def output_artifacts(
    store: mlmd.MetadataStore, execution_id: int
) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """``{output key: artifacts}`` of one execution."""
    events = store.get_events_by_execution_ids([execution_id])
    outputs = [
        e
        for e in events
        if e.type
        in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.PENDING_OUTPUT)
    ]
    by_id = {
        a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in outputs])
    }
    result: dict[str, list[metadata_store_pb2.Artifact]] = {}
    for event in outputs:
        key = event.path.steps[0].key if event.path.steps else ""
        result.setdefault(key, []).append(by_id[event.artifact_id])
    return result


def latest_outputs(
    store: mlmd.MetadataStore, pipeline_name: str, node_id: str
) -> tuple[str, dict[str, list[metadata_store_pb2.Artifact]]]:
    """(state, outputs) of a node's latest execution; ('', {}) if it never ran."""
    executions = node_executions(store, pipeline_name, node_id)
    if not executions:
        return "", {}
    last = executions[-1]
    return execution_state(last), output_artifacts(store, last.id)


def _prop(artifact: metadata_store_pb2.Artifact, name: str) -> Any:
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def load_candidate_result(eval_uri: str):
    """The candidate model's ``tfma.EvalResult`` (with or without a baseline)."""
    import tensorflow_model_analysis as tfma
    from absl import logging as absl_logging

    # Evaluated against a baseline, the results are keyed by model name; TFMA
    # warns once per slice when probing the other layout, so silence it here.
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        candidate = tfma.load_eval_result(eval_uri, model_name="candidate")
        if candidate.slicing_metrics:
            return candidate
        return tfma.load_eval_result(eval_uri)
    finally:
        absl_logging.set_verbosity(verbosity)


def _slice_name(slice_key) -> str:
    return "overall" if not slice_key else ", ".join(f"{k}={v}" for k, v in slice_key)


def _value(metric: dict) -> float:
    return float(metric.get("doubleValue", float("nan")))


def slice_aucs(eval_uri: str) -> dict[str, float]:
    """``{slice name: AUC}`` of the candidate model in a TFMA evaluation.

    For a multi-label model the AUC of a slice is the macro average over
    the labels (the blessed metric); :func:`label_aucs` has each label's.
    """
    result = load_candidate_result(eval_uri)
    aucs = {}
    for slice_key, metrics in result.slicing_metrics:
        for outputs in metrics.values():
            for sub_key, sub in outputs.items():
                for metric, value in sub.items():
                    macro = "macro_average" in metric and metric.endswith("_auc")
                    if macro or (metric == "auc" and not sub_key):
                        aucs[_slice_name(slice_key)] = _value(value)
    return aucs


def label_aucs(eval_uri: str, label_names: list[str]) -> dict[str, float]:
    """``{label name: AUC}`` on the overall slice of a multi-label model's
    TFMA evaluation (its ``classId:j`` sub-keys, in label-name order)."""
    result = load_candidate_result(eval_uri)
    out = {}
    for slice_key, metrics in result.slicing_metrics:
        if slice_key:
            continue
        for outputs in metrics.values():
            for sub_key, sub in outputs.items():
                if sub_key.startswith("classId:") and "auc" in sub:
                    j = int(sub_key.split(":", 1)[1])
                    out[label_names[j]] = _value(sub["auc"])
    return {name: out[name] for name in label_names if name in out}


def _label_names(training: dict[str, Any]) -> list[str]:
    """The multilabel task's label names from the training summary's config."""
    config = training.get("config") or {}
    if config.get("task") != "multilabel":
        return []
    return [n.strip() for n in str(config.get("label_names", "")).split(",")]


def summarize(
    metadata_path: str,
    pipeline_name: str,
    *,
    node_ids: dict[str, str],
    roc_png: str | None = None,
) -> dict[str, Any]:
    """Collects what the closing summary prints.

    Args:
        metadata_path: the sqlite MLMD file.
        pipeline_name: the pipeline's name.
        node_ids: ``{"example_gen"|"trainer"|"evaluator"|"pusher": node id}``.
        roc_png: where to draw the overall ROC curve (``None``: no plot).

    Returns:
        A dict with ``states``, ``counts``, ``aucs``, ``blessed``, ``pushed``,
        ``pushed_path``, ``tensorboard_dir``, ``training`` and ``roc_png``.
    """
    store = open_store(metadata_path)
    summary: dict[str, Any] = {"states": {}}
    outputs = {}
    for role, node_id in node_ids.items():
        state, outs = latest_outputs(store, pipeline_name, node_id)
        summary["states"][node_id] = state
        outputs[role] = outs

    examples = (outputs.get("example_gen", {}).get("examples") or [None])[0]
    if examples is not None:
        names = json.loads(examples.properties["split_names"].string_value)
        summary["counts"] = {
            name: {
                "examples": _prop(examples, f"num_examples_{name}"),
                "positive": _prop(examples, f"num_positive_{name}"),
            }
            for name in names
        }
        summary["rejected"] = _prop(examples, "num_rejected")

    model_run = (outputs.get("trainer", {}).get("model_run") or [None])[0]
    if model_run is not None:
        summary["tensorboard_dir"] = model_run.uri
        path = os.path.join(model_run.uri, "training_summary.json")
        if os.path.exists(path):
            with open(path) as f:
                summary["training"] = json.load(f)

    evaluation = (outputs.get("evaluator", {}).get("evaluation") or [None])[0]
    blessing = (outputs.get("evaluator", {}).get("blessing") or [None])[0]
    names = _label_names(summary.get("training") or {})
    if evaluation is not None:
        summary["aucs"] = slice_aucs(evaluation.uri)
        summary["evaluation_uri"] = evaluation.uri
        if names:
            summary["label_aucs"] = label_aucs(evaluation.uri, names)
        if roc_png and not names:
            from morphhr_tf.evaluation.plots import (
                plot_roc_points,
                roc_from_eval_result,
            )

            result = load_candidate_result(evaluation.uri)
            curves = {}
            overall = summary["aucs"].get("overall", float("nan"))
            curves[f"overall (AUC {overall:.3f})"] = roc_from_eval_result(result)
            for view in ("CC", "MLO"):
                key = ((F.VIEW, view),)
                try:
                    auc = summary["aucs"].get(f"{F.VIEW}={view}", float("nan"))
                    curves[f"{view} (AUC {auc:.3f})"] = roc_from_eval_result(
                        result, key
                    )
                except ValueError:
                    pass
            summary["roc_png"] = plot_roc_points(
                curves, roc_png, title="MorphHR, eval split"
            )
    if blessing is not None:
        summary["blessed"] = bool(_prop(blessing, "blessed"))
    pushed = (outputs.get("pusher", {}).get("pushed_model") or [None])[0]
    if pushed is not None:
        summary["pushed"] = bool(_prop(pushed, "pushed"))
        summary["pushed_path"] = _prop(pushed, "pushed_destination")
    return summary


def format_summary(summary: dict[str, Any], *, seconds: float | None = None) -> str:
    """The human-readable closing summary."""
    lines = ["", "=" * 72, "MorphHR pipeline summary", "=" * 72]
    if seconds is not None:
        lines.append(f"wall time: {seconds / 60:.1f} min ({seconds:.0f} s)")
    lines.append(
        "components: "
        + ", ".join(f"{k}={v or 'not run'}" for k, v in summary["states"].items())
    )
    multilabel = bool(summary.get("label_aucs"))
    positive = "with a finding" if multilabel else "malignant"
    for name, c in (summary.get("counts") or {}).items():
        lines.append(
            f"data {name:>5}: {c['examples']} images ({c['positive']} {positive})"
        )
    if summary.get("rejected") is not None:
        lines.append(f"data rejected: {summary['rejected']}")
    training = summary.get("training") or {}
    if training:
        parts = [f"precision={training.get('precision')}"]
        for key in ("auc_base", "auc_before_morph", "auc_after_morph", "auc_final"):
            if key in training:
                parts.append(f"{key}={training[key]:.3f}")
        if "train_seconds" in training:
            parts.append(f"train_seconds={training['train_seconds']}")
        lines.append("training: " + ", ".join(parts))
        gain = training.get("resolution_gain")
        if gain and "auc_base" in training:
            test = (
                "DeLong per label in training_summary.json"
                if "per_label" in gain
                else f"DeLong p = {gain['delong_p']:.2g}"
            )
            what = "eval mean AUC" if "per_label" in gain else "eval AUC"
            lines.append(
                f"resolution: {what} {gain['auc_final']:.3f} (MorphHR) vs "
                f"{gain['auc_base']:.3f} (base): {gain['difference']:+.3f}, {test}"
            )
    levels = training.get("levels") or {}
    if levels:
        parts = []
        for level in ("image", "breast", "exam"):
            row = levels.get(level) or {}
            if row.get("auc") is not None:
                low, high = row["ci"]
                parts.append(f"{level} {row['auc']:.3f} [{low:.3f}, {high:.3f}]")
        if parts:
            lines.append("eval AUC by level (trainer): " + ", ".join(parts))
    aucs = summary.get("aucs") or {}
    what = "eval mean AUC" if multilabel else "eval AUC"
    for name in sorted(aucs, key=lambda n: (n != "overall", n)):
        auc = aucs[name]
        lines.append(f"{what} {name:<16} {auc:.3f}")
    if multilabel:
        lines.append(
            "eval AUC per label: "
            + ", ".join(f"{k} {v:.3f}" for k, v in summary["label_aucs"].items())
        )
    if "blessed" in summary:
        lines.append(f"blessing: {'BLESSED' if summary['blessed'] else 'NOT BLESSED'}")
    if "pushed" in summary:
        lines.append(
            f"pushed: {'PUSHED to ' + str(summary['pushed_path']) if summary['pushed'] else 'not pushed'}"
        )
    if summary.get("tensorboard_dir"):
        lines.append(f"TensorBoard: tensorboard --logdir {summary['tensorboard_dir']}")
    if summary.get("roc_png"):
        lines.append(f"ROC curve: {summary['roc_png']}")
    lines.append("=" * 72)
    return "\n".join(lines)
