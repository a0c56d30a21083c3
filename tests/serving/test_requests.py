import json

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.serving import predict_request, rest_request
from morphhr_tf.serving.preprocess import image_array, png_bytes, preprocess_dicom
from morphhr_tf.serving.rest import decode_rest_instances

SIZE = 64


def _direct_probability(loaded, dicom_path):
    pixels = preprocess_dicom(dicom_path, image_size=SIZE)
    out = loaded.signatures["predict_image"](images=tf.constant(image_array(pixels)))
    return float(out["probability"].numpy().ravel()[0])


@pytest.mark.parametrize(
    "signature", ["predict_png", "serving_default", "predict_image"]
)
def test_rest_body_decoded_like_tf_serving_gives_the_same_probability(
    saved_model_dir, dicom_files, signature
):
    loaded = tf.saved_model.load(saved_model_dir)
    body = rest_request(dicom_files[0], signature=signature, image_size=SIZE)
    body = json.loads(json.dumps(body))  # what goes over the wire
    assert body["signature_name"] == signature
    inputs = decode_rest_instances(body)
    (name,) = inputs
    if signature == "predict_image":
        tensor = tf.constant(np.asarray(inputs[name], np.float32))
    else:
        assert isinstance(inputs[name][0], bytes)
        tensor = tf.constant(inputs[name])
    served = loaded.signatures[signature](**{name: tensor})["probability"]
    expected = _direct_probability(loaded, dicom_files[0])
    assert abs(float(served.numpy().ravel()[0]) - expected) <= 1e-5


def test_rest_png_body_carries_the_preprocessed_png(dicom_files):
    body = rest_request(dicom_files[0], signature="predict_png", image_size=SIZE)
    (png,) = decode_rest_instances(body)["png"]
    assert png == png_bytes(preprocess_dicom(dicom_files[0], image_size=SIZE))
    decoded = tf.io.decode_png(png, dtype=tf.uint16)
    assert decoded.shape == (SIZE, SIZE, 1)


def test_unknown_signature_is_refused(dicom_files):
    with pytest.raises(ValueError, match="predict_jpeg"):
        rest_request(dicom_files[0], signature="predict_jpeg")


@pytest.mark.parametrize(
    "signature", ["predict_png", "predict_image", "serving_default"]
)
def test_grpc_predict_request(saved_model_dir, dicom_files, signature):
    request = predict_request(
        dicom_files[0],
        model_name="morphhr",
        signature=signature,
        version=3,
        image_size=SIZE,
    )
    assert request.model_spec.name == "morphhr"
    assert request.model_spec.signature_name == signature
    assert request.model_spec.version.value == 3
    request = type(request).FromString(request.SerializeToString())
    (name,) = request.inputs
    value = tf.make_ndarray(request.inputs[name])
    loaded = tf.saved_model.load(saved_model_dir)
    served = loaded.signatures[signature](**{name: tf.constant(value)})["probability"]
    expected = _direct_probability(loaded, dicom_files[0])
    assert abs(float(served.numpy().ravel()[0]) - expected) <= 1e-5
