"""The model card: what a pushed model is, what it was trained and checked on,
how well it does and where it must not be used, as Markdown and JSON.

:func:`build_model_card` is pure: it takes the trainer's summary, the eval
split's labels, probabilities and slicing columns, the calibration and the
operating points, and returns a JSON-safe dict; :func:`render_markdown`
turns that dict into the Markdown page. The trainer writes both beside the
SavedModel (``assets.extra/model_card.md`` and ``.json``), so the Pusher
delivers them with every pushed model. A card holds counts, rates and
configuration only: no patient, study or image identifier, no file name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from morphhr_tf.evaluation import metrics

MARKDOWN_FILE = "model_card.md"
JSON_FILE = "model_card.json"
#: Bootstrap replicates of the card's confidence intervals.
CARD_BOOTSTRAP = 1000
#: Slices with fewer positives or negatives than this get no AUC.
MIN_CLASS_COUNT = 5

INTENDED_USE = {
    "binary": (
        "Research on image-level malignancy classification of screening and "
        "diagnostic mammograms (one probability per image; per-breast and "
        "per-exam scores by aggregation). Not a medical device: not cleared "
        "for diagnosis or triage, and never to be used without a radiologist."
    ),
    "multilabel": (
        "Research on multi-label classification of frontal chest radiographs "
        "(one probability per finding). Not a medical device: not cleared for "
        "diagnosis or triage, and never to be used without a radiologist."
    ),
}
LIMITS = (
    "Figures come from the eval split of the training data source only; "
    "performance on other scanners, sites, populations or prevalences is "
    "unknown until measured there.",
    "The eval split chose the calibration and the operating points: their "
    "rates on it are optimistic; check them on held-out data (the test split) "
    "before use.",
    "A model trained on the synthetic data sets the project generates has "
    "learned synthetic lesions and says nothing about real images.",
    "Slices with fewer than "
    f"{MIN_CLASS_COUNT} positives or negatives get no AUC: too few to measure.",
)


def _auc(labels: np.ndarray, probs: np.ndarray, seed: int) -> dict[str, Any]:
    n_pos = int(labels.sum())
    n_neg = int(len(labels) - n_pos)
    row: dict[str, Any] = {"n": int(len(labels)), "positive": n_pos, "negative": n_neg}
    if min(n_pos, n_neg) < MIN_CLASS_COUNT:
        row.update(auc=None, ci=None)
        return row
    result = metrics.auc_with_ci(labels, probs, n_bootstrap=CARD_BOOTSTRAP, seed=seed)
    row.update(auc=result.auc, ci=[result.ci_low, result.ci_high])
    return row


def level_row(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Counts and AUC with 95% bootstrap CI (``None`` below
    :data:`MIN_CLASS_COUNT` cases of a class), JSON-safe."""
    return _json_safe(_auc(np.asarray(labels), np.asarray(probs, np.float64), 0))


def _per_slice(
    labels: np.ndarray, probs: np.ndarray, slices: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """AUC with CI per value of each slicing column (binary task)."""
    rows = []
    for feature, values in slices.items():
        values = np.asarray(values, dtype=object)
        if len(values) != len(labels):
            raise ValueError(
                f"slice column {feature!r} has {len(values)} values for "
                f"{len(labels)} examples"
            )
        for value in sorted(set(values.tolist()) - {""}):
            mask = values == value
            rows.append(
                {"slice": f"{feature}={value}", **_auc(labels[mask], probs[mask], 0)}
            )
    return rows


def _performance(
    labels: np.ndarray,
    probs: np.ndarray,
    slices: Mapping[str, Sequence[str]],
    label_names: Sequence[str] | None,
) -> dict[str, Any]:
    if not label_names:
        return {
            "overall": _auc(labels, probs, 0),
            "slices": _per_slice(labels, probs, slices),
        }
    per_label = [
        {"label": name, **_auc(labels[:, j], probs[:, j], j)}
        for j, name in enumerate(label_names)
    ]
    defined = [row["auc"] for row in per_label if row["auc"] is not None]
    return {
        "mean_auc": float(np.mean(defined)) if defined else None,
        "labels_averaged": len(defined),
        "per_label": per_label,
    }


def build_model_card(
    *,
    training_summary: Mapping[str, Any],
    config: Mapping[str, Any],
    eval_labels: np.ndarray,
    eval_probs: np.ndarray,
    slices: Mapping[str, Sequence[str]] | None = None,
    label_names: Sequence[str] | None = None,
    calibration: Mapping[str, Any] | None = None,
    operating_points: Sequence[Mapping[str, Any]] | None = None,
    levels: Mapping[str, Any] | None = None,
    code_version: str = "unknown",
) -> dict[str, Any]:
    """The card as a JSON-safe dict (see the module docstring).

    Args:
        training_summary: the trainer's ``training_summary.json`` content.
        config: the training options (``TrainingConfig.to_custom_config()``).
        eval_labels, eval_probs: the eval split, ``[N]`` (binary) or
            ``[N, L]``; the probabilities as served (calibrated if a
            calibration is given).
        slices: ``{feature: value per example}`` (binary task: AUC per slice).
        label_names: the multilabel task's label names.
        calibration: ``{"method", "ece_before", "ece_after"}`` (ECE on the
            eval split) or ``None``.
        operating_points: :func:`morphhr_tf.evaluation.calibration.
            operating_points` of the served probabilities.
        levels: image-, breast- and exam-level AUCs
            (:func:`morphhr_tf.training.finalize.level_aucs`), binary task.
        code_version: the package version and commit.

    Raises:
        ValueError: for labels and probabilities of different shapes.
    """
    labels = np.asarray(eval_labels)
    probs = np.asarray(eval_probs, dtype=np.float64)
    if labels.shape != probs.shape:
        raise ValueError(
            f"eval_labels and eval_probs must have one shape. Received: "
            f"{labels.shape} and {probs.shape}"
        )
    task = "multilabel" if label_names else "binary"
    summary_keys = (
        "train_label_counts",
        "train_label_positives",
        "labels_lacking_a_class",
        "auc_base",
        "auc_before_morph",
        "auc_after_morph",
        "max_abs_diff_at_morph",
        "auc_final",
        "precision",
        "strategy",
        "train_seconds",
    )
    return _json_safe(
        {
            "model": {
                "name": f"MorphHR ({config.get('model')})",
                "task": task,
                "label_names": list(label_names or []),
                "resolution": config.get("resolution"),
                "code_version": code_version,
            },
            "intended_use": INTENDED_USE[task],
            "limits": list(LIMITS),
            "data": {
                "eval_examples": int(labels.shape[0]),
                "eval_positive": (
                    int(labels.sum()) if task == "binary" else labels.sum(0).tolist()
                ),
                **{
                    k: training_summary[k]
                    for k in summary_keys
                    if k in training_summary
                },
            },
            "performance_eval_split": {
                **_performance(labels, probs, slices or {}, label_names),
                **({"levels": dict(levels)} if levels else {}),
            },
            "calibration": dict(calibration) if calibration else None,
            "operating_points": list(operating_points or []),
            "training_config": dict(config),
        }
    )


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and numpy scalars as
    Python numbers (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(row: Mapping[str, Any]) -> str:
    if row.get("auc") is None:
        return "n/a (too few cases)"
    low, high = row["ci"]
    return f"{row['auc']:.3f} [{low:.3f}, {high:.3f}]"


def _points_lines(points: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| output | operating point | threshold | sensitivity | specificity |",
        "| --- | --- | --- | --- | --- |",
    ]
    for column in points:
        name = column.get("name") or f"column {column.get('column')}"
        for kind, label in (
            ("sensitivity_at_specificity", "specificity >= {:.2f}"),
            ("specificity_at_sensitivity", "sensitivity >= {:.2f}"),
        ):
            for p in column.get(kind, []):
                lines.append(
                    f"| {name} | {label.format(p['target'])} | {p['threshold']:.4f} "
                    f"| {p['sensitivity']:.3f} | {p['specificity']:.3f} |"
                )
    return lines


def _rates(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_rates(v) for v in value) + "]"
    return "n/a" if value is None else f"{value:.4f}"


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as a Markdown page."""
    model, perf = card["model"], card["performance_eval_split"]
    lines = [
        f"# Model card: {model['name']}",
        "",
        f"- Task: {model['task']}"
        + (f" ({len(model['label_names'])} labels)" if model["label_names"] else ""),
        f"- Input: {model['resolution']} x {model['resolution']} px, one channel",
        f"- Code version: {model['code_version']}",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Limits",
        "",
        *[f"- {text}" for text in card["limits"]],
        "",
        "## Data",
        "",
        "```json",
        json.dumps(card["data"], indent=1, sort_keys=True),
        "```",
        "",
        "## Performance on the eval split (AUC [95% bootstrap CI])",
        "",
    ]
    if "overall" in perf:
        lines += [
            "| slice | positives | negatives | AUC |",
            "| --- | --- | --- | --- |",
        ]
        for row in [{"slice": "overall", **perf["overall"]}, *perf["slices"]]:
            lines.append(
                f"| {row['slice']} | {row['positive']} | {row['negative']} "
                f"| {_fmt(row)} |"
            )
    else:
        mean = perf["mean_auc"]
        lines.append(
            f"Mean AUC over {perf['labels_averaged']} labels: "
            + ("n/a" if mean is None or math.isnan(mean) else f"{mean:.3f}")
        )
        lines += [
            "",
            "| label | positives | negatives | AUC |",
            "| --- | --- | --- | --- |",
        ]
        for row in perf["per_label"]:
            lines.append(
                f"| {row['label']} | {row['positive']} | {row['negative']} "
                f"| {_fmt(row)} |"
            )
    levels = perf.get("levels")
    if levels:
        lines += [
            "",
            "| level | positives | negatives | AUC |",
            "| --- | --- | --- | --- |",
        ]
        for level in ("image", "breast", "exam"):
            if level in levels:
                row = levels[level]
                lines.append(
                    f"| {level} | {row['positive']} | {row['negative']} | {_fmt(row)} |"
                )
        lines.append(
            "\nA breast's score is the mean of a patient's images of one side, "
            "an exam's the maximum over the patient's breasts (the eval records "
            "carry no study key). "
            f"Images without a patient key or laterality: {levels.get('images_left_out', 0)}."
        )
    cal = card.get("calibration")
    lines += ["", "## Calibration", ""]
    if cal:
        lines.append(
            f"Served probabilities are calibrated ({cal['method']}, fitted on the "
            f"eval split). Expected calibration error (15 equal-width bins) on "
            f"the eval split: {_rates(cal['ece_before'])} before, "
            f"{_rates(cal['ece_after'])} after."
        )
    else:
        lines.append("Served probabilities are the model's own (not calibrated).")
    if card.get("operating_points"):
        lines += ["", "## Operating points (eval split, served probability)", ""]
        lines += _points_lines(card["operating_points"])
    lines += [
        "",
        "## Training configuration",
        "",
        "```json",
        json.dumps(card["training_config"], indent=1, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
