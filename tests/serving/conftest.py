"""A tiny exported MorphHR SavedModel and synthetic DICOM files."""

import glob

import keras
import pytest

from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.training.export import export_serving_model

RESOLUTION = 64


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory):
    """A randomly initialized MorphHR (32 -> 64 px), exported like the Trainer does."""
    keras.utils.set_random_seed(0)
    base = resnet18((RESOLUTION // 2, RESOLUTION // 2, 1), width=4)
    model = build_morphhr(base, RESOLUTION, front_channels=4, seed=0)
    path = str(tmp_path_factory.mktemp("model") / "Format-Serving")
    return export_serving_model(model, path)


@pytest.fixture(scope="session")
def dicom_files(tmp_path_factory):
    """Full-field synthetic mammograms (DICOM), 128 px tall."""
    from morphhr_tf.synthetic.cbis_ddsm import generate

    root = tmp_path_factory.mktemp("dicom")
    generate(str(root), patients=1, seed=0, rows=128, rois=False)
    files = sorted(glob.glob(str(root / "**" / "*.dcm"), recursive=True))
    assert files, "the synthetic generator wrote no DICOM files"
    return files


@pytest.fixture(scope="session")
def nan_model_dir(tmp_path_factory):
    """The same tiny model with one NaN weight: every probability is NaN."""
    import numpy as np

    keras.utils.set_random_seed(0)
    base = resnet18((RESOLUTION // 2, RESOLUTION // 2, 1), width=4)
    model = build_morphhr(base, RESOLUTION, front_channels=4, seed=0)
    weights = model.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)  # the output bias
    model.set_weights(weights)
    path = str(tmp_path_factory.mktemp("nan_model") / "Format-Serving")
    return export_serving_model(model, path)


CHEST_LABELS = ("Atelectasis", "Effusion", "Pleural_Thickening")
CHEST_RESOLUTION = 32


def tiny_multilabel_model(num_labels=3, seed=0):
    """A tiny functional model with a sigmoid head: [N, 32, 32, 1] -> [N, L]."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((CHEST_RESOLUTION, CHEST_RESOLUTION, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(
        num_labels,
        activation="sigmoid",
        kernel_initializer=keras.initializers.RandomNormal(stddev=3.0),
        name="findings",
    )(x)
    return keras.Model(inputs, x, name="tiny_chest")


@pytest.fixture(scope="session")
def multilabel_model():
    return tiny_multilabel_model()


@pytest.fixture(scope="session")
def multilabel_model_dir(tmp_path_factory, multilabel_model):
    """The tiny multi-label model exported with label names, no calibration."""
    path = str(tmp_path_factory.mktemp("chest_model") / "Format-Serving")
    return export_serving_model(multilabel_model, path, label_names=CHEST_LABELS)


@pytest.fixture(scope="session")
def chest_labels():
    """The label names of the tiny multi-label model."""
    return CHEST_LABELS


@pytest.fixture(scope="session")
def build_multilabel_model():
    """:func:`tiny_multilabel_model`, for tests that need a fresh copy."""
    return tiny_multilabel_model
