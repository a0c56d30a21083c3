"""Multi-label (ChestX-ray14) serving: named probabilities from every signature."""

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.tfrecord_codec import decode_image, encode_example
from morphhr_tf.serving.signatures import SIGNATURE_NAMES, ServingModule, output_keys
from morphhr_tf.serving.warmup import read_warmup_requests
from morphhr_tf.training.export import export_serving_model

# tests/serving/conftest.py's multi-label model and names.
CHEST_LABELS = ("Atelectasis", "Effusion", "Pleural_Thickening")
CHEST_RESOLUTION = 32
L = len(CHEST_LABELS)


@pytest.fixture(scope="module", autouse=True)
def _same_names(chest_labels):
    assert chest_labels == CHEST_LABELS


@pytest.fixture(scope="module")
def loaded(multilabel_model_dir):
    return tf.saved_model.load(multilabel_model_dir)


def _inputs(n, seed=0):
    """The same n images as examples, PNGs and decoded float images."""
    rng = np.random.default_rng(seed)
    images = [rng.random((CHEST_RESOLUTION,) * 2).astype(np.float32) for _ in range(n)]
    examples = [
        encode_example(img, label=0, patient_key="p", image_key=f"i{i}")
        for i, img in enumerate(images)
    ]
    pngs = tf.io.parse_example(
        tf.constant(examples), {"image": tf.io.FixedLenFeature([], tf.string)}
    )["image"]
    decoded = tf.stack([decode_image(p) for p in pngs])
    return {
        "serving_default": {"examples": tf.constant(examples)},
        "predict_png": {"png": pngs},
        "predict_image": {"images": decoded},
    }, decoded.numpy()


@pytest.mark.parametrize("signature", SIGNATURE_NAMES)
def test_each_signature_returns_named_probabilities_equal_to_keras(
    loaded, multilabel_model, signature
):
    inputs, decoded = _inputs(3)
    outputs = loaded.signatures[signature](**inputs[signature])
    assert set(outputs) == {F.PROBABILITIES, *CHEST_LABELS}
    assert set(outputs) == set(output_keys(CHEST_LABELS))
    probabilities = outputs[F.PROBABILITIES].numpy()
    assert probabilities.shape == (3, L) and probabilities.dtype == np.float32
    expected = np.asarray(multilabel_model(decoded, training=False))
    assert np.max(np.abs(probabilities - expected)) <= 1e-5
    assert np.ptp(expected) > 0.05  # the tiny model's outputs differ
    for i, name in enumerate(CHEST_LABELS):
        assert outputs[name].shape == (3, 1)
        np.testing.assert_array_equal(outputs[name].numpy()[:, 0], probabilities[:, i])


def test_label_names_and_resolution_are_read_back(loaded):
    assert [n.decode() for n in loaded.label_names.numpy()] == list(CHEST_LABELS)
    assert int(loaded.resolution.numpy()) == CHEST_RESOLUTION
    assert not hasattr(loaded, "calibration_method")


def test_empty_batches_give_empty_columns(loaded):
    empty = {
        "predict_image": {"images": tf.zeros([0, 8, 8, 1])},
        "predict_png": {"png": tf.constant([], tf.string)},
        "serving_default": {"examples": tf.constant([], tf.string)},
    }
    for signature, inputs in empty.items():
        outputs = loaded.signatures[signature](**inputs)
        assert outputs[F.PROBABILITIES].shape == (0, L), signature
        assert outputs[CHEST_LABELS[0]].shape == (0, 1), signature


def test_warmup_requests_run_for_a_multilabel_model(multilabel_model_dir, loaded):
    logs = read_warmup_requests(multilabel_model_dir)
    assert sorted(g.predict_log.request.model_spec.signature_name for g in logs) == (
        sorted(SIGNATURE_NAMES)
    )
    for log in logs:
        request = log.predict_log.request
        function = loaded.signatures[request.model_spec.signature_name]
        specs = function.structured_input_signature[1]
        inputs = {
            name: tf.constant(tf.make_ndarray(proto), dtype=specs[name].dtype)
            for name, proto in request.inputs.items()
        }
        probabilities = function(**inputs)[F.PROBABILITIES].numpy()
        assert probabilities.shape == (1, L)
        assert np.all(np.isfinite(probabilities))


def test_a_nan_model_output_fails_the_request(build_multilabel_model):
    model = build_multilabel_model()
    weights = model.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)
    model.set_weights(weights)
    module = ServingModule(model, label_names=CHEST_LABELS)
    with pytest.raises(tf.errors.InvalidArgumentError, match="probabilities: the mo"):
        module.predict_image(tf.fill([1, CHEST_RESOLUTION, CHEST_RESOLUTION, 1], 0.5))


def test_label_names_must_match_the_model_and_be_output_keys(
    multilabel_model, tmp_path
):
    with pytest.raises(ValueError, match=r"outputs 3 probabilities .* but 2 label"):
        export_serving_model(
            multilabel_model, str(tmp_path / "m"), label_names=CHEST_LABELS[:2]
        )
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="3 outputs per image needs label_names"):
        ServingModule(multilabel_model)
    bad = {
        "empty": ["A", "", "C"],
        "space": ["A", "Pleural Thickening", "C"],
        "slash": ["A", "B/C", "D"],
        "reserved": ["A", "probabilities", "C"],
        "repeated": ["A", "B", "A"],
    }
    messages = {
        "empty": "non-empty string.*Received: ''",
        "space": "Received: 'Pleural Thickening'",
        "slash": "Received: 'B/C'",
        "reserved": "named like an output.*'probabilities'",
        "repeated": r"unique. Received repeated: \['A'\]",
    }
    for case, names in bad.items():
        with pytest.raises(ValueError, match=messages[case]):
            ServingModule(multilabel_model, label_names=names)
    with pytest.raises(ValueError, match="sequence of strings"):
        ServingModule(multilabel_model, label_names="ABC")
