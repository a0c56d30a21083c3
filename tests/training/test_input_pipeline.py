import time

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data.image_ops import resize_image
from morphhr_tf.training.input_pipeline import (
    augment_image,
    count_labels,
    make_dataset,
)


def test_area_resize_is_average_pooling_for_integer_factors():
    x = np.random.default_rng(0).random((1, 8, 8, 1)).astype(np.float32)
    expected = x.reshape(1, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(resize_image(x, 4).numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(resize_image(x, 8).numpy(), x)


def test_count_labels(tiny_splits):
    assert count_labels(tiny_splits["train"]) == (16, 8)
    assert count_labels(tiny_splits["eval"]) == (8, 4)


def test_eval_dataset_is_one_ordered_pass(tiny_splits):
    ds = make_dataset(tiny_splits["eval"], resolution=32, batch_size=5, training=False)
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [5, 5, 2]
    assert batches[0][0].shape[1:] == (32, 32, 1)
    assert batches[0][0].dtype == tf.float32
    labels = np.concatenate([b[1].numpy().ravel() for b in batches])
    np.testing.assert_array_equal(labels, [1, 0, 0] * 4)


def test_balanced_sampling_draws_both_classes_equally(tiny_splits):
    ds = make_dataset(
        tiny_splits["train"],
        resolution=32,
        batch_size=50,
        training=True,
        balance="sample",
        augment=True,
        seed=3,
    )
    images, labels = next(iter(ds.take(1)))
    assert images.shape == (50, 32, 32, 1)
    assert 0.3 < float(tf.reduce_mean(labels)) < 0.7  # the data hold 1/3 positives
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 1.0


def test_class_weights_balance_the_loss(tiny_splits):
    ds = make_dataset(
        tiny_splits["train"],
        resolution=32,
        batch_size=24,
        training=True,
        balance="class_weight",
    )
    _, labels, weights = next(iter(ds))
    labels, weights = labels.numpy().ravel(), weights.numpy()
    # 16 negatives, 8 positives: w = n / (2 n_class)
    np.testing.assert_allclose(weights[labels == 1], 24 / 16)
    np.testing.assert_allclose(weights[labels == 0], 24 / 32)


def test_balancing_a_single_class_split_is_refused(tiny_splits):
    with pytest.raises(ValueError, match="positives=0"):
        make_dataset(
            tiny_splits["train"],
            resolution=32,
            batch_size=4,
            training=True,
            balance="sample",
            label_counts=(10, 0),
        )


def test_augmentation_is_seeded_small_and_in_range():
    image = tf.random.stateless_uniform([64, 64, 1], seed=[1, 2])
    a = augment_image(image, tf.constant([0, 1]))
    b = augment_image(image, tf.constant([0, 1]))
    c = augment_image(image, tf.constant([0, 2]))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.shape == image.shape
    assert float(tf.reduce_max(tf.abs(a - c))) > 0.0
    assert 0.0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 1.0


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(ValueError, match="No TFRecord"):
        make_dataset(str(tmp_path / "*.gz"), resolution=8, batch_size=1, training=False)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_augmentation_keeps_one_pixel_specks_sharp(seed):
    """The default shift copies pixels; the bilinear affine blurs specks."""
    image = np.full((64, 64, 1), 0.4, np.float32)
    image[20, 30, 0] = image[40, 12, 0] = 0.9
    x = tf.constant(image)
    sharp = augment_image(x, tf.constant([seed, 7])).numpy()
    blurred = augment_image(x, tf.constant([seed, 7]), resample=True).numpy()

    def contrast(a):
        return float(a.max() - np.median(a[a > 0]))

    # Only the pointwise intensity jitter (gamma, contrast) changes the peak.
    assert contrast(sharp) >= 0.75 * contrast(image)
    # Whole-pixel shift: the speck is still one pixel, its neighbours flat.
    r, c = np.unravel_index(np.argmax(sharp[..., 0]), (64, 64))
    neighbours = sharp[r - 1 : r + 2, c - 1 : c + 2, 0].ravel()
    assert np.sum(neighbours > np.median(sharp[sharp > 0]) + 0.05) == 1
    assert contrast(blurred) < contrast(sharp)


def _first_batches(ds, n):
    it = iter(ds)
    return [tuple(t.numpy() for t in next(it)) for _ in range(n)]


def _same(a, b):
    return all(
        len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("balance", ["none", "sample", "class_weight"])
def test_training_batches_depend_on_the_seed_alone(tiny_splits, balance, augment):
    """Same seed, same batches: across builds and across iterators of one build.

    Nine batches of 8 cover three epochs of the 24 examples (and more of the
    positives under ``sample``), so the per-epoch reshuffles are compared too.
    The second iterator starts after the first one has taken a batch and had
    time to prefetch past its first epoch, the way Keras' ``fit`` peeks at a
    batch and then trains from a fresh iterator.
    """

    def build(seed):
        return make_dataset(
            tiny_splits["train"],
            resolution=16,
            batch_size=8,
            training=True,
            balance=balance,
            augment=augment,
            seed=seed,
        )

    reference = _first_batches(build(5), 9)
    ds = build(5)
    peek = iter(ds)
    next(peek)
    time.sleep(0.5)
    del peek
    assert _same(_first_batches(ds, 9), reference)
    assert _same(_first_batches(build(5), 9), reference)
    assert not _same(_first_batches(build(6), 9), reference)
