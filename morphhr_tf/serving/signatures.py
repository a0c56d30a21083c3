"""The serving signatures every exported MorphHR SavedModel carries.

- ``serving_default``: serialized ``tf.Example`` strings (input ``examples``)
  -> ``{"probability": [N, 1]}``; the TFX / TFMA convention, what the
  Evaluator calls.
- ``predict_image``: float32 images ``[N, H, W, 1]`` in [0, 1] (input
  ``images``), area-resized to the model's input size.
- ``predict_png``: 16-bit grayscale PNG bytes (input ``png``), the form a TF
  Serving REST client sends as ``{"b64": ...}``.

All three decode and resize with the functions the training input pipeline
uses, so one image gives one probability whichever way it arrives.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.tfrecord_codec import parse_example
from morphhr_tf.training.input_pipeline import decode_and_resize, resize_image

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGE = "predict_image"
PREDICT_PNG = "predict_png"
SIGNATURE_NAMES = (SERVING_DEFAULT, PREDICT_IMAGE, PREDICT_PNG)

# Input tensor names, as TF Serving's REST "instances"/"inputs" name them.
EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
PNG_INPUT = "png"


class ServingModule(tf.Module):
    """Wraps a Keras model with the three serving functions.

    Args:
        model: a Keras model mapping float32 [N, S, S, 1] to [N, 1]
            probabilities.
        image_size: S, the model's input size.

    Example:

    >>> module = ServingModule(model, 128)
    >>> tf.saved_model.save(module, path, signatures=module.signatures())
    """

    def __init__(self, model: keras.Model, image_size: int):
        super().__init__(name="morphhr_serving")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(
                f"image_size must be a positive integer. Received: {image_size!r}"
            )
        self.model = model
        self.image_size = image_size
        # Saved with the model, so clients can read the input size back.
        self.input_size = tf.Variable(
            image_size, dtype=tf.int32, trainable=False, name="input_size"
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
        probability = self.model(images, training=False)
        return {F.PROBABILITY: tf.cast(probability, tf.float32)}

    def _decode_pngs(self, pngs: tf.Tensor) -> tf.Tensor:
        size = self.image_size
        return tf.map_fn(
            lambda png: decode_and_resize(png, size),
            pngs,
            fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32),
        )

    def _serve_examples(self, examples):
        parsed = parse_example(examples)
        return self._probability(self._decode_pngs(parsed[F.IMAGE]))

    def _predict_image(self, images):
        size = self.image_size
        images = tf.ensure_shape(resize_image(images, size), [None, size, size, 1])
        return self._probability(images)

    def _predict_png(self, png):
        return self._probability(self._decode_pngs(png))

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """``{signature name: concrete function}`` for ``tf.saved_model.save``."""
        return {
            SERVING_DEFAULT: self.serve_examples.get_concrete_function(),
            PREDICT_IMAGE: self.predict_image.get_concrete_function(),
            PREDICT_PNG: self.predict_png.get_concrete_function(),
        }
