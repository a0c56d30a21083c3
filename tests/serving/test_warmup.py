"""The TF Serving warm-up file of the exported SavedModel.

TF Serving reads ``assets.extra/tf_serving_warmup_requests`` when it loads a
version and runs each request against that version's signature; one failing
request and the version does not load. These tests replay the records the
same way: each request's inputs, decoded from their TensorProtos, through the
named signature of the loaded SavedModel.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from morphhr_tf.data import features as F
from morphhr_tf.serving.signatures import SIGNATURE_NAMES
from morphhr_tf.serving.warmup import (
    MAX_WARMUP_RECORDS,
    read_warmup_requests,
    warmup_path,
    warmup_requests,
)


@pytest.fixture(scope="module")
def loaded(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)


def test_warmup_file_sits_where_tf_serving_reads_it(saved_model_dir):
    path = os.path.join(saved_model_dir, "assets.extra", "tf_serving_warmup_requests")
    assert warmup_path(saved_model_dir) == path
    assert os.path.isfile(path)
    assert os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb"))


def test_one_predict_request_per_signature(saved_model_dir):
    logs = read_warmup_requests(saved_model_dir)
    assert 0 < len(logs) <= MAX_WARMUP_RECORDS
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    names = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert sorted(names) == sorted(SIGNATURE_NAMES)


@pytest.mark.parametrize("signature", SIGNATURE_NAMES)
def test_each_request_runs_through_its_signature(saved_model_dir, loaded, signature):
    (log,) = [
        log
        for log in read_warmup_requests(saved_model_dir)
        if log.predict_log.request.model_spec.signature_name == signature
    ]
    request = log.predict_log.request
    function = loaded.signatures[signature]
    specs = function.structured_input_signature[1]
    assert set(request.inputs) == set(specs)
    inputs = {}
    for name, proto in request.inputs.items():
        # TF Serving refuses a tensor whose dtype differs from the signature's.
        assert proto.dtype == specs[name].dtype.as_datatype_enum, name
        inputs[name] = tf.constant(tf.make_ndarray(proto), dtype=specs[name].dtype)
        assert specs[name].shape.is_compatible_with(inputs[name].shape), name
    outputs = function(**inputs)
    assert set(outputs) == {F.PROBABILITY}
    probability = outputs[F.PROBABILITY].numpy()
    assert probability.shape == (1, 1)
    assert probability.dtype == np.float32
    assert np.all(np.isfinite(probability))
    assert 0.0 <= probability[0, 0] <= 1.0


def test_requests_carry_an_image_of_the_model_resolution(saved_model_dir, loaded):
    size = int(loaded.resolution.numpy())
    requests = {
        log.predict_log.request.model_spec.signature_name: log.predict_log.request
        for log in read_warmup_requests(saved_model_dir)
    }
    images = tf.make_ndarray(requests["predict_image"].inputs["images"])
    assert images.shape == (1, size, size, 1)
    np.testing.assert_allclose(images, 32768 / 65535, atol=1e-6)
    (png,) = tf.make_ndarray(requests["predict_png"].inputs["png"])
    decoded = tf.io.decode_png(png, channels=1, dtype=tf.uint16).numpy()
    assert decoded.shape == (size, size, 1)
    assert [r.model_spec.signature_name for r in warmup_requests(size)] == list(
        SIGNATURE_NAMES
    )


def test_records_parse_as_prediction_logs(saved_model_dir):
    for record in tf.data.TFRecordDataset(warmup_path(saved_model_dir)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        assert log.HasField("predict_log")


def test_the_tfx_pusher_keeps_the_warmup_file(saved_model_dir, tmp_path):
    from tfx.components.pusher.executor import Executor
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    model = standard_artifacts.Model()
    model.uri = os.path.dirname(saved_model_dir)  # <uri>/Format-Serving
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=str(tmp_path / "serving")
        )
    )
    Executor().Do(
        {"model": [model]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    (version,) = os.listdir(tmp_path / "serving")
    served = str(tmp_path / "serving" / version)
    assert os.path.isfile(os.path.join(served, "saved_model.pb"))
    with (
        open(warmup_path(saved_model_dir), "rb") as a,
        open(warmup_path(served), "rb") as b,
    ):
        assert a.read() == b.read()
