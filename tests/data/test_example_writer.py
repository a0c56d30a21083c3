"""The TensorFlow-free writer: TensorFlow's bytes and pixels, no TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data import example_writer
from morphhr_tf.data import features as F
from morphhr_tf.synthetic.cbis_ddsm import generate

_KEYS = dict(
    label=1,
    patient_key="a" * 16,
    image_key="b" * 16,
    view="MLO",
    laterality="R",
    density="C",
    dataset="cbis_ddsm",
)


def _tensorflow_example(png: bytes, h: int, w: int, labels=(), **keys) -> bytes:
    """The same record written by TensorFlow's own tf.train.Example."""

    def text(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))

    def ints(vs):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(vs)))

    feats = {
        F.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        F.HEIGHT: ints([h]),
        F.WIDTH: ints([w]),
        F.LABEL: ints([keys["label"]]),
        F.PATIENT_KEY: text(keys["patient_key"]),
        F.IMAGE_KEY: text(keys["image_key"]),
        F.VIEW: text(keys["view"]),
        F.LATERALITY: text(keys["laterality"]),
        F.DENSITY: text(keys["density"]),
        F.DATASET: text(keys["dataset"]),
    }
    if labels:
        feats[F.LABELS] = ints(labels)
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize("labels", [(), (0, 1, 1, 0)])
@pytest.mark.parametrize("view", ["CC", "", "vue latérale"])
def test_bytes_equal_tensorflows_serialization(labels, view):
    pixels = np.random.default_rng(0).integers(0, 65536, (9, 7), dtype=np.uint16)
    keys = {**_KEYS, "view": view}
    ours = example_writer.encode_example(pixels, labels=labels, **keys)
    png = example_writer.encode_png16(pixels)
    assert ours == _tensorflow_example(png, 9, 7, labels=labels, **keys)


@pytest.mark.parametrize("shape", [(1, 1), (1, 13), (13, 1), (64, 48), (5, 300)])
def test_png_decodes_to_the_same_pixels(shape):
    rng = np.random.default_rng(sum(shape))
    for pixels in (
        rng.integers(0, 65536, shape, dtype=np.uint16),
        np.full(shape, 65535, np.uint16),
        np.cumsum(rng.integers(0, 9, shape), axis=0).astype(np.uint16),
    ):
        png = example_writer.encode_png16(pixels)
        decoded = tf.io.decode_png(png, channels=1, dtype=tf.uint16).numpy()[..., 0]
        np.testing.assert_array_equal(decoded, pixels)


def test_float_images_are_rounded_to_16_bits():
    image = np.array([[0.0, 0.5, 1.0], [1e-6, 0.25, 0.9999]], np.float32)
    png = example_writer.encode_png16(image)
    decoded = tf.io.decode_png(png, channels=1, dtype=tf.uint16).numpy()[..., 0]
    np.testing.assert_array_equal(decoded, np.round(image * 65535.0).astype(np.uint16))


def test_png_is_about_the_size_of_tensorflows():
    # A smooth image with noise, like a preprocessed mammogram.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:256, 0:200]
    image = 20000 + 30 * yy + 20 * xx + rng.normal(0, 300, (256, 200))
    pixels = np.clip(image, 0, 65535).astype(np.uint16)
    ours = len(example_writer.encode_png16(pixels))
    theirs = len(tf.io.encode_png(pixels[:, :, None], compression=1).numpy())
    assert 0.8 * theirs < ours < 1.2 * theirs, (ours, theirs)


def test_an_ingest_worker_encodes_without_importing_tensorflow(tmp_path):
    generate(str(tmp_path / "raw"), patients=1, rows=256, seed=0)
    dicom = next(
        os.path.join(d, f)
        for d, _, files in os.walk(tmp_path / "raw")
        for f in files
        if f.endswith(".dcm")
    )
    code = f"""
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("the worker imported " + name)
sys.meta_path.insert(0, NoTensorFlow())
from morphhr_tf.data.dicom_reader import DEFAULT_MAX_PIXELS, DEFAULT_MODALITIES
from morphhr_tf.data.ingest_encode import EncodeFn
from morphhr_tf.data.records import ImageRecord
fn = EncodeFn(64, "square", "salt", DEFAULT_MODALITIES, DEFAULT_MAX_PIXELS, None)
fn.setup()
record = ImageRecord(path={dicom!r}, label=1, patient_id="P1", dataset="cbis_ddsm")
(out,) = [o for o in fn.process(("train", "key", record)) if type(o) is tuple]
assert out[0] == "train" and len(out[1]) > 1000, out
print("encoded", len(out[1]))
"""
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "encoded" in run.stdout
