"""The TFMA ``EvalConfig`` of the pipeline's Evaluator.

The model is evaluated through its ``serving_default`` signature (serialized
``tf.Example`` -> ``{"probability"}``), with the label and the slicing columns
read from the same examples:

- metrics: example count, AUC (TFMA's built-in ROC AUC), AUC-PR, precision and
  recall at fixed thresholds, calibration (mean prediction / mean label),
  calibration and confusion-matrix plots (the ROC curve is drawn from the
  latter);
- slices: overall, then by view, laterality and density;
- blessing: overall AUC >= ``auc_lower_bound`` and no regression versus the
  baseline (the last blessed model) beyond ``max_auc_regression``. The gate is
  a per-slice threshold on the overall slice only (``MetricConfig.threshold``
  would gate every slice); small slices are reported, never gated.

A multi-label model (``label_names`` given: ChestX-ray14's findings) is
evaluated on its ``probabilities`` output against the records' multi-hot
``labels``: AUC, AUC-PR, mean label and mean prediction per label
(``binarize`` over the class ids, keys ``classId:j`` in label-name order),
and the blessing gates the macro-averaged AUC, the mean over the labels, on
the overall slice (a second ``MetricsSpec`` that only aggregates, so no
single finding's AUC is gated).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tensorflow_model_analysis.proto import config_pb2

from morphhr_tf.data import features as F

DEFAULT_THRESHOLDS = (0.25, 0.5, 0.75)


def make_eval_config(
    auc_lower_bound: float = 0.6,
    *,
    max_auc_regression: float = 1e-10,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    slice_features: Sequence[str] = F.SLICE_FEATURES,
    signature_name: str = "serving_default",
    label_names: Sequence[str] | None = None,
) -> config_pb2.EvalConfig:
    """Builds the Evaluator's config.

    Args:
        auc_lower_bound: the overall AUC a model needs to be blessed.
        max_auc_regression: how far the AUC may fall below the baseline's
            (the last blessed model) and still be blessed.
        thresholds: decision thresholds for precision and recall.
        slice_features: feature keys sliced on, one at a time.
        signature_name: the SavedModel signature TFMA calls.
        label_names: a multi-label model's label names (``None``: binary).

    Returns:
        A ``config_pb2.EvalConfig``.

    Raises:
        ValueError: for a bound outside [0, 1], a negative regression or a
            threshold outside (0, 1).
    """
    if not 0.0 <= auc_lower_bound <= 1.0:
        raise ValueError(
            f"auc_lower_bound must lie in [0, 1]. Received: {auc_lower_bound!r}"
        )
    if max_auc_regression < 0:
        raise ValueError(
            f"max_auc_regression must be >= 0. Received: {max_auc_regression!r}"
        )
    if any(not 0.0 < t < 1.0 for t in thresholds):
        raise ValueError(f"thresholds must lie in (0, 1). Received: {list(thresholds)}")
    at_thresholds = json.dumps({"thresholds": [float(t) for t in thresholds]})
    auc_threshold = config_pb2.MetricThreshold(
        value_threshold=config_pb2.GenericValueThreshold(
            lower_bound={"value": float(auc_lower_bound)}
        ),
        change_threshold=config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -float(max_auc_regression)},
        ),
    )
    if label_names:
        return _multi_label_config(
            list(label_names), auc_threshold, signature_name, slice_features
        )
    return _eval_config(
        F.LABEL,
        F.PROBABILITY,
        signature_name,
        slice_features,
        [
            config_pb2.MetricsSpec(
                metrics=[
                    config_pb2.MetricConfig(class_name="ExampleCount"),
                    config_pb2.MetricConfig(
                        class_name="AUC",
                        per_slice_thresholds=[
                            config_pb2.PerSliceMetricThreshold(
                                slicing_specs=[config_pb2.SlicingSpec()],
                                threshold=auc_threshold,
                            )
                        ],
                    ),
                    config_pb2.MetricConfig(class_name="AUCPrecisionRecall"),
                    config_pb2.MetricConfig(
                        class_name="Precision", config=at_thresholds
                    ),
                    config_pb2.MetricConfig(class_name="Recall", config=at_thresholds),
                    config_pb2.MetricConfig(class_name="MeanLabel"),
                    config_pb2.MetricConfig(class_name="MeanPrediction"),
                    config_pb2.MetricConfig(class_name="Calibration"),
                    config_pb2.MetricConfig(class_name="CalibrationPlot"),
                    config_pb2.MetricConfig(class_name="ConfusionMatrixPlot"),
                ]
            )
        ],
    )


def _eval_config(
    label_key: str,
    prediction_key: str,
    signature_name: str,
    slice_features: Sequence[str],
    metrics_specs: list[config_pb2.MetricsSpec],
) -> config_pb2.EvalConfig:
    """One model read through ``signature_name``, sliced overall and by each
    of ``slice_features``."""
    return config_pb2.EvalConfig(
        model_specs=[
            config_pb2.ModelSpec(
                signature_name=signature_name,
                label_key=label_key,
                prediction_key=prediction_key,
            )
        ],
        slicing_specs=[config_pb2.SlicingSpec()]
        + [config_pb2.SlicingSpec(feature_keys=[key]) for key in slice_features],
        metrics_specs=metrics_specs,
    )


def _multi_label_config(
    label_names: list[str],
    auc_threshold: config_pb2.MetricThreshold,
    signature_name: str,
    slice_features: Sequence[str],
) -> config_pb2.EvalConfig:
    """The multi-label ``EvalConfig`` (see the module docstring)."""
    class_ids = list(range(len(label_names)))
    return _eval_config(
        F.LABELS,
        F.PROBABILITIES,
        signature_name,
        slice_features,
        [
            config_pb2.MetricsSpec(
                metrics=[config_pb2.MetricConfig(class_name="ExampleCount")]
            ),
            config_pb2.MetricsSpec(
                binarize=config_pb2.BinarizationOptions(
                    class_ids={"values": class_ids}
                ),
                metrics=[
                    config_pb2.MetricConfig(class_name="AUC"),
                    config_pb2.MetricConfig(class_name="AUCPrecisionRecall"),
                    config_pb2.MetricConfig(class_name="MeanLabel"),
                    config_pb2.MetricConfig(class_name="MeanPrediction"),
                ],
            ),
            config_pb2.MetricsSpec(
                aggregate=config_pb2.AggregationOptions(
                    macro_average=True,
                    class_weights=dict.fromkeys(class_ids, 1.0),
                ),
                metrics=[
                    config_pb2.MetricConfig(
                        class_name="AUC",
                        per_slice_thresholds=[
                            config_pb2.PerSliceMetricThreshold(
                                slicing_specs=[config_pb2.SlicingSpec()],
                                threshold=auc_threshold,
                            )
                        ],
                    )
                ],
            ),
        ],
    )
