"""The serving signatures every exported MorphHR SavedModel carries.

- ``serving_default``: serialized ``tf.Example`` strings (input ``examples``)
  -> ``{"probability": [N, 1]}``; the TFX / TFMA convention, what the
  Evaluator calls.
- ``predict_image``: float32 images ``[N, H, W, 1]`` in [0, 1] (input
  ``images``), area-resized to the model's input size.
- ``predict_png``: 16-bit grayscale PNG bytes (input ``png``), the form a TF
  Serving REST client sends as ``{"b64": ...}``.

All three decode and resize with :mod:`morphhr_tf.data.image_ops`, as the
training input pipeline does, so one image gives one probability whichever
way it arrives.

Input contract (``docs/deploy.md``, "Serving input contract"). Bad input
fails the request with ``InvalidArgument`` naming the input; it never crashes
the server and never yields a probability that is not a number:

- dtype or rank other than the signature's: refused before the call (TF
  Serving and ``ConcreteFunction`` check the ``TensorSpec``).
- empty batch (N = 0): an empty ``[0, 1]`` result.
- ``images``: NaN or Inf pixels, or values outside [0, 1] (for example 0-255
  or 0-65535 sent unscaled), or a zero height or width: ``InvalidArgument``.
- ``png`` / the ``image`` feature: bytes that are not a PNG (checked by the
  signature and IHDR chunk, before decoding), or a PNG declaring more than
  :data:`MAX_PNG_PIXELS` pixels (a decompression bomb): ``InvalidArgument``.
  8-bit PNGs are scaled to [0, 1] by 1/255 like 16-bit ones by 1/65535; RGB
  or alpha PNGs are converted to one gray channel.
- any height and width: area-resized to the model's S x S (aspect not kept,
  as ``resize_mode="square"`` at ingestion).
- the output is checked too: a NaN or Inf probability fails the request.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.image_ops import decode_and_resize, resize_image
from morphhr_tf.data.tfrecord_codec import parse_example

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGE = "predict_image"
PREDICT_PNG = "predict_png"
SIGNATURE_NAMES = (SERVING_DEFAULT, PREDICT_IMAGE, PREDICT_PNG)

# Input tensor names, as TF Serving's REST "instances"/"inputs" name them.
EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
PNG_INPUT = "png"

# Largest width x height a PNG may declare (8192 x 8192): a full-field
# mammogram at acquisition size is ~14 MP; more is refused before decoding.
MAX_PNG_PIXELS = 1 << 26
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_signature_name(signature: str) -> None:
    """Raises ``ValueError`` unless ``signature`` is one of :data:`SIGNATURE_NAMES`
    (client request builders check it before any file is read)."""
    if signature not in SIGNATURE_NAMES:
        raise ValueError(
            f"signature must be one of {SIGNATURE_NAMES}. Received: {signature!r}"
        )


def check_images(images: tf.Tensor, name: str = IMAGES_INPUT) -> tf.Tensor:
    """Float images [N, H, W, 1] -> the same, or ``InvalidArgument``.

    Refuses a zero height or width, NaN or Inf pixels and values outside
    [0, 1]; the error message starts with ``name``. The checks run before
    anything downstream of the returned tensor.
    """
    shape = tf.shape(images)
    checks = [
        tf.debugging.assert_positive(
            shape[1:3],
            message=f"{name}: empty image (height or width 0); expected [N, H, W, 1]",
        )
    ]
    with tf.control_dependencies(checks):
        images = tf.debugging.check_numerics(
            images,
            f"{name}: NaN or Inf pixel values; expected finite values in [0, 1]",
        )
    checks = [
        tf.debugging.assert_greater_equal(
            images,
            0.0,
            message=f"{name}: pixel values below 0; expected values in [0, 1]",
            summarize=1,
        ),
        tf.debugging.assert_less_equal(
            images,
            1.0,
            message=(
                f"{name}: pixel values above 1; expected values in [0, 1] "
                "(16-bit intensities / 65535)"
            ),
            summarize=1,
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def check_pngs(pngs: tf.Tensor, name: str = PNG_INPUT) -> tf.Tensor:
    """PNG strings [N] -> the same, or ``InvalidArgument`` before any decoding.

    Each string must start with the PNG signature and an IHDR chunk declaring
    a positive width and height of at most :data:`MAX_PNG_PIXELS` pixels in
    all; the error message starts with ``name`` and lists the bad indices.
    The checks run before anything downstream of the returned tensor.
    """
    # Padded, so that slicing a short string is never an error of its own.
    padded = tf.strings.join([pngs, tf.constant(b"\0" * 24)])
    signature_ok = tf.logical_and(
        tf.equal(tf.strings.substr(padded, 0, 8), _PNG_SIGNATURE),
        tf.equal(tf.strings.substr(padded, 12, 4), b"IHDR"),
    )
    size = tf.io.decode_raw(
        tf.strings.substr(padded, 16, 8), tf.int32, little_endian=False
    )
    size = tf.cast(tf.reshape(size, [-1, 2]), tf.int64)
    size_ok = tf.logical_and(
        tf.reduce_all(size > 0, axis=1),
        size[:, 0] * size[:, 1] <= MAX_PNG_PIXELS,
    )
    signature_check = tf.debugging.Assert(
        tf.reduce_all(signature_ok),
        [
            f"{name}: not a PNG image (no PNG signature and IHDR chunk) at indices",
            tf.where(tf.logical_not(signature_ok))[:, 0],
        ],
        summarize=8,
        name="check_png_signature",
    )
    with tf.control_dependencies([signature_check]):
        size_check = tf.debugging.Assert(
            tf.reduce_all(size_ok),
            [
                f"{name}: PNG width x height not in 1..{MAX_PNG_PIXELS} at indices",
                tf.where(tf.logical_not(size_ok))[:, 0],
                "declared [width, height]",
                tf.boolean_mask(size, tf.logical_not(size_ok)),
            ],
            summarize=8,
            name="check_png_size",
        )
    with tf.control_dependencies([signature_check, size_check]):
        return tf.identity(pngs)


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


class ServingModule(tf.Module):
    """Wraps a Keras model with the three serving functions.

    Args:
        model: a Keras model mapping float32 [N, S, S, 1] to [N, 1]
            probabilities; S, its resolution (input size), is read from its
            input shape and saved with the module as ``resolution``.

    Raises:
        ValueError: if the model's input is not a static square
            ``[None, S, S, 1]``.

    Example:

    >>> module = ServingModule(model)
    >>> int(module.resolution.numpy())
    128
    >>> tf.saved_model.save(module, path, signatures=module.signatures())
    """

    def __init__(self, model: keras.Model):
        super().__init__(name="morphhr_serving")
        self.model = model
        self._side = model_resolution(model)
        # Saved with the model, so clients can read the resolution back.
        self.resolution = tf.Variable(
            self._side, dtype=tf.int32, trainable=False, name="resolution"
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

    def _probability(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """[N, S, S, 1] -> ``{"probability": [N, 1]}``; N = 0 gives [0, 1]."""

        def predict():
            return tf.cast(self.model(images, training=False), tf.float32)

        # Convolutions refuse an empty batch; an empty request gets an empty
        # answer instead of an obscure kernel error.
        probability = tf.cond(
            tf.shape(images)[0] > 0, predict, lambda: tf.zeros([0, 1], tf.float32)
        )
        probability = tf.debugging.check_numerics(
            probability, f"{F.PROBABILITY}: the model produced NaN or Inf"
        )
        return {F.PROBABILITY: tf.ensure_shape(probability, [None, 1])}

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
        }
