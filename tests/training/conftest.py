"""Tiny gzip TFRecord splits written with the project's codec."""

import os

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data.tfrecord_codec import encode_example


def write_split(path: str, n: int, size: int, seed: int) -> None:
    """n examples; label 1 images carry a bright square, so a model can learn."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(n):
            label = i % 3 == 0
            image = rng.uniform(0.0, 0.6, (size, size)).astype(np.float32)
            if label:
                r, c = rng.integers(0, size // 2, 2)
                image[r : r + size // 3, c : c + size // 3] += 0.4
            writer.write(
                encode_example(
                    np.clip(image, 0.0, 1.0),
                    label=int(label),
                    patient_key=f"p{seed}-{i}",
                    image_key=f"i{seed}-{i}",
                    view="CC" if i % 2 else "MLO",
                    laterality="L" if i % 4 < 2 else "R",
                    density=str(1 + i % 4),
                    dataset="test",
                )
            )


@pytest.fixture
def tiny_splits(tmp_path):
    """``{"train": glob, "eval": glob}`` of 64 px examples (24 train, 12 eval)."""
    root = tmp_path / "examples"
    write_split(str(root / "Split-train" / "data-00000.gz"), 24, 64, seed=1)
    write_split(str(root / "Split-eval" / "data-00000.gz"), 12, 64, seed=2)
    return {
        "train": str(root / "Split-train" / "*"),
        "eval": str(root / "Split-eval" / "*"),
    }
