"""The serving signatures every exported MorphHR SavedModel carries.

- ``serving_default``: serialized ``tf.Example`` strings (input ``examples``);
  the TFX / TFMA convention, what the Evaluator calls.
- ``predict_image``: float32 images ``[N, H, W, 1]`` in [0, 1] (input
  ``images``), area-resized to the model's input size.
- ``predict_png``: 16-bit grayscale PNG bytes (input ``png``), the form a TF
  Serving REST client sends as ``{"b64": ...}``.
- ``explain_png`` (besides :data:`SIGNATURE_NAMES`): a saliency map per PNG
  (:mod:`morphhr_tf.serving.explain`).

All three decode and resize with :mod:`morphhr_tf.data.image_ops`, as the
training input pipeline does, so one image gives one answer whichever way it
arrives, with the same outputs (:func:`output_keys`):

- binary model (no ``label_names``; model output ``[N, 1]``):
  ``{"probability": [N, 1]}``;
- multi-label model (``label_names``, e.g. ChestX-ray14's 14 findings; model
  output ``[N, L]`` sigmoid probabilities): ``{"probabilities": [N, L]}``
  (columns in ``label_names`` order) plus each column ``[N, 1]`` under its
  label's own name (``"Effusion"``, ...);
- with a calibration (:class:`morphhr_tf.evaluation.calibration.Calibration`,
  fitted on the eval split) the probabilities above are **calibrated**: the
  model's output mapped in the graph by :func:`calibrate` (equal to
  ``Calibration.apply``); the model's own output is also returned, as
  ``"probability_uncalibrated"`` (binary) or ``"probabilities_uncalibrated"``.

The module saves ``resolution`` (int32), for a multi-label model
``label_names`` (string ``[L]``) and with a calibration ``calibration_method``
(string), for clients of ``tf.saved_model.load(path)``.

Input contract (``docs/deploy.md``, "Serving input contract"): bad input
fails the request with ``InvalidArgument`` naming the input, never crashes the
server and never yields a probability that is not a number. Dtype or rank
other than the signature's is refused before the call; an empty batch gives
an empty ``[0, 1]`` (``[0, L]``) result; ``images`` with NaN, Inf, values
outside [0, 1] or a zero height or width are refused; ``png`` (or the
``image`` feature) that is not a PNG, or declares more than
:data:`MAX_PNG_PIXELS` pixels, is refused before decoding; 8-bit PNGs are
scaled by 1/255 (16-bit by 1/65535), colour ones converted to gray; any size
is area-resized to the model's S x S (aspect not kept); a NaN or Inf model
output fails the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.image_ops import decode_and_resize, resize_image
from morphhr_tf.data.tfrecord_codec import parse_example
from morphhr_tf.evaluation.calibration import PLATT, PLATT_EPS, Calibration
from morphhr_tf.serving.explain import EXPLAIN_PNG, make_explain_png
from morphhr_tf.serving.input_checks import (  # noqa: F401  (re-exported)
    IMAGES_INPUT,
    MAX_PNG_PIXELS,
    PNG_INPUT,
    check_images,
    check_pngs,
)

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGE = "predict_image"
PREDICT_PNG = "predict_png"
SIGNATURE_NAMES = (SERVING_DEFAULT, PREDICT_IMAGE, PREDICT_PNG)

# Input tensor names, as TF Serving's REST "instances"/"inputs" name them.
EXAMPLES_INPUT = "examples"

# The model's own output, beside the calibrated one, when a calibration is in.
PROBABILITY_UNCALIBRATED = "probability_uncalibrated"
PROBABILITIES_UNCALIBRATED = "probabilities_uncalibrated"
# Output keys no label may take.
RESERVED_OUTPUT_KEYS = (
    F.PROBABILITY,
    F.PROBABILITIES,
    PROBABILITY_UNCALIBRATED,
    PROBABILITIES_UNCALIBRATED,
)
_LABEL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def check_signature_name(signature: str) -> None:
    """Raises ``ValueError`` unless ``signature`` is one of :data:`SIGNATURE_NAMES`
    (client request builders check it before any file is read)."""
    if signature not in SIGNATURE_NAMES:
        raise ValueError(
            f"signature must be one of {SIGNATURE_NAMES}. Received: {signature!r}"
        )


def model_resolution(model: keras.Model) -> int:
    """S, the resolution a model takes: its input is ``[None, S, S, 1]``.

    Raises:
        ValueError: for an input shape that is not static, square and
            single-channel, naming the shape received.
    """
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 1:
        raise ValueError(
            "The served model must take square single-channel images of a "
            f"static size, [None, S, S, 1]. Received input shape: {shape}"
        )
    return int(shape[1])


def check_label_names(label_names: Sequence[str]) -> tuple[str, ...]:
    """The label names of a multi-label model, checked as output keys.

    Args:
        label_names: one name per model output column, in column order.

    Returns:
        The names as a tuple.

    Raises:
        ValueError: for a bare string, no names, or a name that is empty, not
            of ``[A-Za-z0-9_.-]``, repeated or in :data:`RESERVED_OUTPUT_KEYS`.
    """
    if isinstance(label_names, str | bytes) or not isinstance(label_names, Sequence):
        raise ValueError(
            "label_names must be a sequence of strings, one per output column. "
            f"Received: {label_names!r}"
        )
    names = tuple(label_names)
    if not names:
        raise ValueError("label_names must name at least one label. Received: ()")
    for name in names:
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
            raise ValueError(
                "Each label name must be a non-empty string of letters, digits, "
                f"'_', '.' or '-' (a signature output key). Received: {name!r}"
            )
        if name in RESERVED_OUTPUT_KEYS:
            raise ValueError(
                f"A label may not be named like an output, {RESERVED_OUTPUT_KEYS}. "
                f"Received: {name!r}"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"label_names must be unique. Received repeated: {repeated}")
    return names


def output_keys(
    label_names: Sequence[str] | None = None, calibrated: bool = False
) -> tuple[str, ...]:
    """The output keys of every signature (see the module docstring)."""
    if label_names is None:
        return (F.PROBABILITY,) + ((PROBABILITY_UNCALIBRATED,) if calibrated else ())
    keys = (F.PROBABILITIES,)
    keys += (PROBABILITIES_UNCALIBRATED,) if calibrated else ()
    return keys + tuple(label_names)


def calibrate(probs: tf.Tensor, calibration: Calibration) -> tf.Tensor:
    """``calibration.apply`` in TF ops: float32 ``[N, L]`` -> float32 ``[N, L]``.

    Computed in float64 like the numpy reference, column by column: Platt
    ``sigmoid(a * logit(clip(p, eps, 1 - eps)) + b)``; isotonic, linear
    interpolation between the knots (``np.interp``) of ``clip(p, 0, 1)``.
    """
    p = tf.cast(probs, tf.float64)
    columns = []
    for i, params in enumerate(calibration.params):
        x = p[:, i]
        if calibration.method == PLATT:
            x = tf.clip_by_value(x, PLATT_EPS, 1.0 - PLATT_EPS)
            logit = tf.math.log(x) - tf.math.log1p(-x)
            columns.append(tf.sigmoid(params["a"] * logit + params["b"]))
            continue
        knots_x = tf.constant(params["x"], tf.float64)
        knots_y = tf.constant(params["y"], tf.float64)
        x = tf.clip_by_value(x, 0.0, 1.0)
        upper = tf.searchsorted(knots_x, x, side="right")
        upper = tf.clip_by_value(upper, 1, len(params["x"]) - 1)
        x0, x1 = tf.gather(knots_x, upper - 1), tf.gather(knots_x, upper)
        y0, y1 = tf.gather(knots_y, upper - 1), tf.gather(knots_y, upper)
        t = tf.clip_by_value((x - x0) / (x1 - x0), 0.0, 1.0)
        columns.append(y0 + t * (y1 - y0))
    return tf.cast(tf.stack(columns, axis=1), tf.float32)


def model_outputs(model: keras.Model, label_names: Sequence[str] | None) -> int:
    """L, the number of probabilities the model gives per image.

    Raises:
        ValueError: unless the output is ``[None, 1]`` (binary, no
            ``label_names``) or ``[None, len(label_names)]``, naming both.
    """
    shape = model.output_shape
    if not isinstance(shape, tuple) or len(shape) != 2:
        raise ValueError(
            f"The served model must output [None, L] probabilities. Received "
            f"output shape: {shape}"
        )
    if label_names is None and shape[1] != 1:
        raise ValueError(
            f"A model with {shape[1]} outputs per image needs label_names (one per "
            f"output); a binary model outputs [None, 1]. Received output shape: "
            f"{shape}"
        )
    if label_names is not None and shape[1] != len(label_names):
        raise ValueError(
            f"The model outputs {shape[1]} probabilities per image but "
            f"{len(label_names)} label_names were given. Received: "
            f"label_names={list(label_names)}, output shape {shape}"
        )
    return int(shape[1])


class ServingModule(tf.Module):
    """Wraps a Keras model with the three serving functions.

    Args:
        model: a Keras model mapping float32 [N, S, S, 1] to [N, 1]
            probabilities (binary) or [N, L] sigmoid probabilities
            (multi-label); S, its resolution (input size), is read from its
            input shape and saved with the module as ``resolution``.
        label_names: ``None`` for a binary model; for a multi-label model
            one name per output column (:func:`check_label_names`), saved as
            the string variable ``label_names``.
        calibration: ``None`` (served probabilities are the model's), or a
            :class:`~morphhr_tf.evaluation.calibration.Calibration` with one
            column per output: every signature then returns calibrated
            probabilities, and the model's under ``*_uncalibrated``.

    Raises:
        ValueError: if the model's input is not a static square
            ``[None, S, S, 1]``, its output does not match ``label_names``,
            the names are invalid, or the calibration has another number of
            columns.

    Example:

    >>> module = ServingModule(model)
    >>> int(module.resolution.numpy())
    128
    >>> tf.saved_model.save(module, path, signatures=module.signatures())
    """

    def __init__(
        self,
        model: keras.Model,
        label_names: Sequence[str] | None = None,
        calibration: Calibration | None = None,
    ):
        super().__init__(name="morphhr_serving")
        self._side = model_resolution(model)
        self._names = None if label_names is None else check_label_names(label_names)
        self._outputs = model_outputs(model, self._names)
        if calibration is not None and (
            not isinstance(calibration, Calibration)
            or calibration.num_columns != self._outputs
        ):
            raise ValueError(
                f"calibration must be None or a Calibration of the model's "
                f"{self._outputs} output columns. Received: {calibration!r}"[:400]
            )
        self.model = model
        self._calibration = calibration
        # Saved with the model, so clients can read them back.
        self.resolution = tf.Variable(
            self._side, dtype=tf.int32, trainable=False, name="resolution"
        )
        if self._names is not None:
            self.label_names = tf.Variable(
                list(self._names), dtype=tf.string, trainable=False, name="label_names"
            )
        if calibration is not None:
            method = calibration.method
            self.calibration_method = tf.Variable(
                method, trainable=False, name="calibration_method"
            )
        self.serve_examples = tf.function(
            self._serve_examples,
            input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
        )
        self.predict_image = tf.function(
            self._predict_image,
            input_signature=[
                tf.TensorSpec([None, None, None, 1], tf.float32, name=IMAGES_INPUT)
            ],
        )
        self.predict_png = tf.function(
            self._predict_png,
            input_signature=[tf.TensorSpec([None], tf.string, name=PNG_INPUT)],
        )
        self.explain_png = make_explain_png(self)  # serving/explain.py

    def _probability(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """[N, S, S, 1] -> the outputs of :func:`output_keys`; N = 0 gives
        ``[0, 1]`` (``[0, L]``) tensors."""
        columns = self._outputs
        key = F.PROBABILITY if self._names is None else F.PROBABILITIES

        def predict():
            return tf.cast(self.model(images, training=False), tf.float32)

        # Convolutions refuse an empty batch; an empty request gets an empty
        # answer instead of an obscure kernel error.
        probability = tf.cond(
            tf.shape(images)[0] > 0,
            predict,
            lambda: tf.zeros([0, columns], tf.float32),
        )
        probability = tf.debugging.check_numerics(
            probability, f"{key}: the model produced NaN or Inf"
        )
        probability = tf.ensure_shape(probability, [None, columns])
        outputs = {key: probability}
        if self._calibration is not None:
            uncalibrated = output_keys(self._names, calibrated=True)[1]
            calibrated = calibrate(probability, self._calibration)
            outputs = {key: calibrated, uncalibrated: probability}
        for i, name in enumerate(self._names or ()):
            outputs[name] = outputs[key][:, i : i + 1]
        return outputs

    def _decode_pngs(self, pngs: tf.Tensor, name: str, scope: str) -> tf.Tensor:
        size = self._side
        pngs = check_pngs(pngs, name)
        # A PNG that passes the header checks but does not decode fails in
        # the node "<scope>_decode/while/DecodePng" (the input's name).
        return tf.map_fn(
            lambda png: decode_and_resize(png, size),
            pngs,
            fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32),
            name=f"{scope}_decode",
        )

    def _serve_examples(self, examples):
        examples = tf.ensure_shape(examples, [None])
        # An unparsable Example fails in the node "examples/ParseExample/...".
        with tf.name_scope(EXAMPLES_INPUT):
            parsed = parse_example(examples)
        images = self._decode_pngs(
            parsed[F.IMAGE], f"{EXAMPLES_INPUT}[{F.IMAGE}]", f"{EXAMPLES_INPUT}_image"
        )
        return self._probability(images)

    def _predict_image(self, images):
        size = self._side
        # Loaded signatures check the dtype but not the shape: check it here,
        # on the input tensor itself, so the error names it.
        images = tf.ensure_shape(images, [None, None, None, 1])
        images = check_images(images, IMAGES_INPUT)
        images = tf.ensure_shape(resize_image(images, size), [None, size, size, 1])
        return self._probability(images)

    def _predict_png(self, png):
        png = tf.ensure_shape(png, [None])
        return self._probability(self._decode_pngs(png, PNG_INPUT, PNG_INPUT))

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """``{signature name: concrete function}`` for ``tf.saved_model.save``."""
        return {
            SERVING_DEFAULT: self.serve_examples.get_concrete_function(),
            PREDICT_IMAGE: self.predict_image.get_concrete_function(),
            PREDICT_PNG: self.predict_png.get_concrete_function(),
            EXPLAIN_PNG: self.explain_png.get_concrete_function(),
        }
