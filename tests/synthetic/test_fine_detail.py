"""The fine-detail task carries its label at full resolution only."""

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from morphhr_tf.synthetic import fine_detail as fd

CONFIG = fd.FineDetailConfig(size=128)


@pytest.fixture(scope="module")
def sample():
    return fd.make_dataset(80, seed=5, config=CONFIG)


def test_oracle_finds_the_label_at_4s_and_not_at_s(sample):
    images, labels, _ = sample
    diameter = 2 * CONFIG.cluster_radius * CONFIG.size
    full = roc_auc_score(labels, fd.oracle_scores(images, cluster_diameter=diameter))
    small = fd.area_downsample(images, 4)
    pooled = roc_auc_score(
        labels, fd.oracle_scores(small, cluster_diameter=diameter / 4)
    )
    assert full >= 0.95, full
    assert pooled <= 0.70, pooled


def test_mean_brightness_and_speck_count_carry_no_label():
    rng = np.random.default_rng(0)
    counts = {0: [], 1: []}
    for i in range(40):
        label = i % 2
        _, points, box = fd.render(rng.integers(1 << 30), label, CONFIG)
        counts[label].append(len(points))
        assert (box is None) == (label == 0)
    for label in (0, 1):
        assert set(counts[label]) <= set(range(fd.SPECKS[0], fd.SPECKS[1] + 1))
    assert abs(np.mean(counts[0]) - np.mean(counts[1])) < 1.5


def test_cluster_box_holds_every_speck_of_a_positive():
    image, points, box = fd.render(7, 1, CONFIG)
    r0, c0, r1, c1 = box
    assert ((points[:, 0] >= r0) & (points[:, 0] <= r1)).all()
    assert ((points[:, 1] >= c0) & (points[:, 1] <= c1)).all()
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1


def test_deterministic_given_the_seed():
    a = fd.make_dataset(4, seed=1, config=CONFIG)[0]
    b = fd.make_dataset(4, seed=1, config=CONFIG)[0]
    np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="size must be an integer >= 32"):
        fd.FineDetailConfig(size=16)
    with pytest.raises(ValueError, match="speck_amplitude must be > 0"):
        dataclasses.replace(CONFIG, speck_amplitude=0.0)
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        fd.render(0, 2, CONFIG)
    with pytest.raises(ValueError, match="not multiples of k=3"):
        fd.area_downsample(np.zeros((1, 128, 128), np.float32), 3)
    with pytest.raises(ValueError, match="num_images must be a positive integer"):
        fd.make_dataset(0)
