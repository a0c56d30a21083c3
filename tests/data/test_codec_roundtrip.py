"""The tf.Example codec round trip is exact (ingest writes what training reads)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.tfrecord_codec import decode_image, encode_example, parse_example


def test_round_trip_is_exact():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, size=(40, 24), dtype=np.uint16)
    data = encode_example(
        image,
        label=1,
        patient_key="pk",
        image_key="ik",
        view="MLO",
        laterality="R",
        density="3",
        dataset="cbis_ddsm",
    )
    parsed = parse_example(tf.constant(data))
    decoded = decode_image(parsed[F.IMAGE]).numpy()[:, :, 0]
    np.testing.assert_array_equal(np.round(decoded * 65535).astype(np.uint16), image)
    assert (int(parsed[F.HEIGHT]), int(parsed[F.WIDTH]), int(parsed[F.LABEL])) == (
        40,
        24,
        1,
    )
    assert [
        parsed[k].numpy()
        for k in (
            F.PATIENT_KEY,
            F.IMAGE_KEY,
            F.VIEW,
            F.LATERALITY,
            F.DENSITY,
            F.DATASET,
        )
    ] == [b"pk", b"ik", b"MLO", b"R", b"3", b"cbis_ddsm"]
    batch = parse_example(tf.constant([data, data]))
    assert batch[F.LABEL].shape == (2,)


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        encode_example(
            np.zeros((4, 4), np.uint16), label=2, patient_key="", image_key=""
        )
    with pytest.raises(ValueError, match="must lie in"):
        encode_example(np.full((4, 4), 2.0), label=0, patient_key="", image_key="")


def test_one_image_encodes_to_the_same_bytes_in_every_process():
    """The feature map is serialized in key order (``deterministic=True``):
    without it, protobuf's map order, and so the record bytes, vary between
    processes."""
    import subprocess
    import sys

    code = (
        "import hashlib, numpy as np;"
        "from morphhr_tf.data.tfrecord_codec import encode_example;"
        "img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8);"
        "print(hashlib.sha256(encode_example(img, label=1, patient_key='p',"
        " image_key='i', view='CC', laterality='L', labels=(0, 1))).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(digests) == 1, digests
