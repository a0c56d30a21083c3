"""What the trainer computes on the eval split once training is done: the
calibration the SavedModel applies, the operating points and the model card.

:func:`finalize` takes the trained model's pass over the eval split (the
trainer's last pass, or its own when given none; in record order, with each
record's slicing columns), fits ``config.calibration``
(Platt scaling by default; :mod:`morphhr_tf.evaluation.calibration`) on it,
measures the expected calibration error before and after, computes the
operating points on the calibrated (served) probabilities and builds the
model card (:mod:`morphhr_tf.evaluation.model_card`). A multilabel column
whose eval labels hold one class only keeps the identity map (it cannot be
fitted) and the card says which.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import keras
import numpy as np

from morphhr_tf.data import features as F
from morphhr_tf.evaluation import calibration as cal
from morphhr_tf.evaluation.model_card import build_model_card
from morphhr_tf.training.checks import MORPH_CHECK_BATCH_SIZE, predict
from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.input_pipeline import make_dataset, read_string_features

_IDENTITY = {
    cal.PLATT: {"a": 1.0, "b": 0.0},
    cal.ISOTONIC: {"x": [0.0, 1.0], "y": [0.0, 1.0]},
}


def code_version() -> str:
    """``morphhr_tf <version>``, plus the git commit when the package runs
    from a checkout (``unknown commit`` otherwise, e.g. in a container)."""
    import morphhr_tf

    root = os.path.dirname(os.path.dirname(os.path.abspath(morphhr_tf.__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown commit"
    return f"morphhr_tf {morphhr_tf.__version__} ({commit or 'unknown commit'})"


def fit_served_calibration(
    method: str, labels: np.ndarray, probs: np.ndarray
) -> tuple[cal.Calibration, list[int]]:
    """``method`` fitted per column; identity for a column lacking a class.

    Returns:
        ``(calibration, columns left at the identity)``.
    """
    y = labels.reshape(len(labels), -1)
    p = probs.reshape(len(probs), -1)
    params, identity = [], []
    for j in range(p.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            params.append(cal.fit_calibration(y[:, j], p[:, j], method).params[0])
        else:
            params.append(dict(_IDENTITY[method]))
            identity.append(j)
    return cal.Calibration(method, tuple(params)), identity


def _points(labels, probs, names) -> list[dict[str, Any]]:
    """Operating points of the columns that hold both classes."""
    y = labels.reshape(len(labels), -1)
    p = probs.reshape(len(probs), -1)
    out = []
    for j in range(p.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            (point,) = cal.operating_points(
                y[:, j], p[:, j], label_names=[names[j] if names else F.PROBABILITY]
            )
            out.append({**point, "column": j})
    return out


def _ece(labels, probs) -> list[float] | float:
    ece = cal.expected_calibration_error(labels, probs)
    return ece if isinstance(ece, float) else [float(e) for e in ece]


def level_aucs(
    labels: np.ndarray, probs: np.ndarray, features: dict[str, list[str]]
) -> dict[str, Any]:
    """AUC with 95% CI at image, breast and exam level (binary task).

    Breasts are a patient's images of one laterality and exams a patient's
    images (the records carry no study key, so ``exam_by="patient"``; see
    :mod:`morphhr_tf.evaluation.aggregate`), scored with its recommended
    pooling (breast mean; exam max over breast means). Images without a
    patient key or laterality are counted and left out of the two levels.
    """
    from morphhr_tf.evaluation import aggregate
    from morphhr_tf.evaluation.model_card import level_row

    rows = [
        {
            "patient_key": features[F.PATIENT_KEY][i],
            "study_key": "",
            "laterality": features[F.LATERALITY][i],
            "view": features[F.VIEW][i],
            "probability": float(probs[i]),
            "label": int(labels[i]),
        }
        for i in range(len(labels))
    ]
    usable = [r for r in rows if r["patient_key"] and r["laterality"]]
    out = {
        "image": level_row(labels, probs),
        "images_left_out": len(rows) - len(usable),
    }
    if usable:
        for level, scores in (
            ("breast", aggregate.breast_scores(usable, exam_by="patient")),
            ("exam", aggregate.exam_scores(usable, exam_by="patient")),
        ):
            out[level] = level_row(
                np.array([s["label"] for s in scores]),
                np.array([s["score"] for s in scores]),
            )
    return out


def finalize(
    model: keras.Model,
    summary: dict[str, Any],
    config: TrainingConfig,
    eval_files: list[str],
    eval_pass: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The calibration, operating points and model card of a trained model.

    Args:
        model, summary, config: the trained model, the trainer's summary
            and its options.
        eval_files: the eval split's TFRecord globs.
        eval_pass: ``(probabilities, labels)`` of ``model`` over
            ``eval_files`` in record order, as
            :func:`~morphhr_tf.training.checks.predict` gives them (the
            trainer passes its own last pass, so the split is not predicted
            twice); ``None`` predicts it here.

    Returns:
        ``{"calibration": Calibration | None, "operating_points": [...],
        "model_card": dict}``; ``summary`` gains ``calibration`` (method and
        eval-split ECE before and after).
    """
    names = config.label_list or None
    if eval_pass is None:
        dataset = make_dataset(
            eval_files,
            resolution=config.resolution,
            batch_size=MORPH_CHECK_BATCH_SIZE,
            training=False,
            num_labels=len(names) if names else None,
        )
        eval_pass = predict(model, dataset)
    probs, labels = (np.asarray(a) for a in eval_pass)
    if len(probs) != len(labels):
        raise ValueError(
            "eval_pass must hold as many probabilities as labels. "
            f"Received: {len(probs)} probabilities and {len(labels)} labels"
        )
    calibration, served, cal_info = None, probs, None
    if config.calibration != "none":
        calibration, identity = fit_served_calibration(
            config.calibration, labels, probs
        )
        served = calibration.apply(probs)
        cal_info = {
            "method": config.calibration,
            "fitted_on": "eval split",
            "ece_before": _ece(labels, probs),
            "ece_after": _ece(labels, served),
            "identity_columns": [names[j] if names else j for j in identity],
        }
        summary["calibration"] = cal_info
    points = _points(labels, served, names)
    slices, levels = {}, None
    if not names:
        keys = (*F.SLICE_FEATURES, F.PATIENT_KEY)
        features = read_string_features(eval_files, tuple(dict.fromkeys(keys)))
        if len(features[F.PATIENT_KEY]) != len(labels):
            raise ValueError(
                f"eval_pass holds {len(labels)} records, the eval files "
                f"{len(features[F.PATIENT_KEY])}: pass the model's pass over "
                "eval_files in record order, or None to predict it here"
            )
        slices = {k: features[k] for k in F.SLICE_FEATURES}
        levels = level_aucs(labels, served, features)
        summary["levels"] = levels
    card = build_model_card(
        training_summary=summary,
        config=config.to_custom_config(),
        eval_labels=labels,
        eval_probs=served,
        slices=slices,
        label_names=names,
        calibration=cal_info,
        operating_points=points,
        levels=levels,
        code_version=code_version(),
    )
    return {"calibration": calibration, "operating_points": points, "model_card": card}
