"""``tf.data`` input pipeline over the gzip TFRecords the ExampleGen writes.

Decoding goes through :mod:`morphhr_tf.data.tfrecord_codec` and
:mod:`morphhr_tf.data.image_ops`, which the serving signatures use too, so
training and serving see the same pixels. Training adds class-balanced
sampling (or class weights) and augmentation: up-down flips (the canonical
orientation puts every breast against the same side, so left-right flips are
not used), a whole-pixel shift (or, on request, a small bilinear affine:
rotation, scale, shift) and intensity jitter (gamma, contrast, brightness).

Reproducibility: a training dataset from :func:`make_dataset` is a function
of its arguments (``seed`` included) and TensorFlow's global seed
(``tf.random.set_seed``, which ``keras.utils.set_random_seed`` sets), and of
nothing else: every iterator over it yields the same batches, in every
``balance`` mode, with or without augmentation. ``Dataset.shuffle(seed=s,
reshuffle_each_iteration=True)`` alone does not give that: all the iterators
of one shuffled dataset draw their orders from one seed generator, the
second iterator gets the second order, and an iterator that has been
abandoned but not yet deleted still draws a new order whenever its
prefetching threads cross an epoch boundary. Keras 3's ``fit`` under a
distribution strategy makes two iterators (one batch for the symbolic build,
then a fresh iterator for training), so which order training saw depended on
how far the first one had prefetched: a race, lost now and then on a busy
machine. The ``sample`` mode iterated the shuffle twice at once, once per
class, and raced the same way. Here every iterator makes its own shuffled
stream (:func:`_shuffled_epochs`), so the race has nothing left to decide.
The parallel map and interleave stages keep their order
(``tf.data.Options.deterministic``, set explicitly).

Bitwise identical training needs deterministic kernels as well. On the CPU,
TensorFlow's kernels that the models here use (oneDNN convolutions and
matrix products, Eigen reductions) give the same bits from run to run on one
machine with a fixed thread count (the multi-worker test compares three
processes bit for bit), though nothing guarantees it across thread counts
or instruction sets; on GPUs several kernels (cuDNN convolution backprop algorithms, ``segment_sum``
and scatter-add gradients with atomics) are not deterministic at all.
``tf.config.experimental.enable_op_determinism()`` (the successor of the
``TF_DETERMINISTIC_OPS=1`` environment variable) selects deterministic
algorithms, or raises for an op that has none, at some cost in speed; it
also requires every random op to be seeded, which this pipeline satisfies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.image_ops import decode_and_resize
from morphhr_tf.data.tfrecord_codec import parse_example

AUTOTUNE = tf.data.AUTOTUNE


def _list_files(file_patterns: str | Sequence[str]) -> list[str]:
    if isinstance(file_patterns, str):
        file_patterns = [file_patterns]
    files = sorted({f for p in file_patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise ValueError(f"No TFRecord files match {list(file_patterns)}")
    return files


def _records(files: list[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(
        files, compression_type="GZIP", num_parallel_reads=min(len(files), 4)
    )


def _shuffled_epochs(files: list[str], seed: int) -> tf.data.Dataset:
    """The records, shuffled afresh every epoch, forever; the same for every iterator.

    The shuffle sits inside a one-element ``flat_map``, so every iterator
    over the result builds its own shuffle, whose seed generator starts from
    ``seed`` and which only that iterator's ``repeat`` advances (epoch by
    epoch, in order). What each iterator yields is what the first iterator
    of ``records.shuffle(1024, seed, reshuffle_each_iteration=True).repeat()``
    yields: a new order every epoch, the same orders every time.
    """

    def epochs(_):
        records = _records(files)
        return records.shuffle(1024, seed=seed, reshuffle_each_iteration=True).repeat()

    return tf.data.Dataset.range(1).flat_map(epochs)


def count_labels(file_patterns: str | Sequence[str]) -> tuple[int, int]:
    """Counts (negatives, positives) without decoding images."""
    spec = {F.LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    ds = _records(_list_files(file_patterns)).batch(512)
    ds = ds.map(lambda s: tf.io.parse_example(s, spec)[F.LABEL])
    neg = pos = 0
    for labels in ds.as_numpy_iterator():
        pos += int((labels == 1).sum())
        neg += int((labels == 0).sum())
    return neg, pos


def read_string_features(
    file_patterns: str | Sequence[str], keys: Sequence[str]
) -> dict[str, list[str]]:
    """The string features ``keys`` of every record, in the order in which an
    unshuffled :func:`make_dataset` (``training=False``) yields the records.

    Missing features read as ``""``.
    """
    spec = {k: tf.io.FixedLenFeature([], tf.string, default_value="") for k in keys}
    ds = _records(_list_files(file_patterns)).batch(512)
    ds = ds.map(lambda s: tf.io.parse_example(s, spec))
    out: dict[str, list[str]] = {k: [] for k in keys}
    for batch in ds.as_numpy_iterator():
        for k in keys:
            out[k].extend(v.decode("utf-8", "replace") for v in batch[k])
    return out


def count_label_matrix(
    file_patterns: str | Sequence[str], num_labels: int
) -> tuple[int, list[int]]:
    """Counts ``(examples, positives per label)`` of multi-label records.

    Raises:
        ValueError: if a record has no ``labels`` feature (a binary record:
            ingest a multi-label source such as ``chestxray14``).
    """
    from morphhr_tf.data.tfrecord_codec import multi_label_spec

    spec = {F.LABELS: multi_label_spec(num_labels)[F.LABELS]}
    files = _list_files(file_patterns)
    ds = _records(files).batch(512)
    ds = ds.map(lambda s: tf.io.parse_example(s, spec)[F.LABELS])
    n, positives = 0, [0] * num_labels
    for labels in ds.as_numpy_iterator():
        if (labels < 0).any():
            raise ValueError(
                f"Records in {files} have no '{F.LABELS}' feature: "
                "the multilabel task needs records of a multi-label source "
                "(ingest --source chestxray14)."
            )
        n += len(labels)
        positives = [p + int(c) for p, c in zip(positives, labels.sum(axis=0))]
    return n, positives


def _affine(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random rotation (+-6 deg), scale (0.93-1.07) and shift (+-4%)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([], seeds[0], -6.0, 6.0) * math.pi / 180.0
    scale = tf.random.stateless_uniform([], seeds[1], 0.93, 1.07)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    shift = tf.random.stateless_uniform([2], seeds[2], -0.04, 0.04) * size
    c = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output pixel (x, y) samples the input at M (x - c, y - c) + c - shift.
    transform = tf.stack(
        [
            cos,
            sin,
            c - cos * c - sin * c - shift[0],
            -sin,
            cos,
            c + sin * c - cos * c - shift[1],
            0.0,
            0.0,
        ]
    )
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out[0]


def _shift(image: tf.Tensor, seed: tf.Tensor, fraction: float = 0.04) -> tf.Tensor:
    """Random whole-pixel shift (up to +-`fraction` of the side), zero fill.

    Pixels are copied, never interpolated, so one-pixel structures keep their
    exact values.
    """
    size = tf.shape(image)[0]
    pad = tf.maximum(
        tf.cast(tf.round(tf.cast(size, tf.float32) * fraction), tf.int32), 1
    )
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)


def augment_image(
    image: tf.Tensor, seed: tf.Tensor, *, resample: bool = False, flip: bool = True
) -> tf.Tensor:
    """Augments one float32 [S, S, 1] image in [0, 1] (stateless, seeded).

    Args:
        image: the image.
        seed: int32/int64 tensor of shape [2].
        resample: geometric jitter by a bilinear affine (rotation, scale,
            sub-pixel shift). Off by default: the interpolation blurs
            structures one or two pixels wide (a speck's peak drops by up to
            half), so the training images would differ from the eval and
            served ones exactly in the detail that high resolution is for.
            Without it, the shift is by whole pixels.
        flip: random up-down flips (mammograms, whose canonical orientation
            puts every breast against one side). Off for chest radiographs:
            the heart, the diaphragm and the lungs' apices have a side and
            an end, and a flipped radiograph is not one the model will see.

    Returns:
        The augmented image, same shape, values in [0, 1].
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    if flip:
        image = tf.image.stateless_random_flip_up_down(image, seeds[0])
    image = _affine(image, seeds[1]) if resample else _shift(image, seeds[1])
    gamma = tf.exp(tf.random.stateless_uniform([], seeds[2], -0.15, 0.15))
    image = tf.pow(tf.clip_by_value(image, 0.0, 1.0) + 1e-6, gamma)
    contrast = tf.random.stateless_uniform([], seeds[3], 0.9, 1.1)
    brightness = tf.random.stateless_uniform([], seeds[4], -0.03, 0.03)
    image = (image - 0.5) * contrast + 0.5 + brightness
    return tf.clip_by_value(image, 0.0, 1.0)


def make_dataset(
    file_patterns: str | Sequence[str],
    *,
    resolution: int,
    batch_size: int,
    training: bool,
    balance: str = "none",
    augment: bool = False,
    seed: int = 0,
    label_counts: tuple[int, int] | None = None,
    drop_remainder: bool | None = None,
    num_labels: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(images [B, S, S, 1] float32, labels [B, 1] float32)``.

    With ``num_labels`` (the multilabel task) the labels are the records'
    multi-hot ``labels``, ``[B, num_labels]``; ``balance`` must then be
    ``none`` (a multi-label model balances in its loss,
    :class:`~morphhr_tf.training.losses.LabelWeightedBinaryCrossentropy`).

    Args:
        file_patterns: glob(s) of gzip TFRecord files (``fn_args.train_files``).
        resolution: S, the model's input size; stored images are
            area-resized to S x S.
        batch_size: global batch size.
        training: shuffle, repeat forever, drop the last partial batch,
            balance and augment. Otherwise one ordered pass.
        balance: ``sample`` draws both classes with probability 1/2;
            ``class_weight`` adds a third element, a per-example weight
            ``n / (2 n_class)``; ``none`` leaves the data as it is.
        augment: apply :func:`augment_image` (training only); without its
            up-down flips for multi-label (chest) records (``num_labels``).
        seed: shuffling and augmentation seed. The same seed gives the same
            batches, from every iterator over the dataset (see the module
            docstring).
        label_counts: (negatives, positives); counted when needed and absent.
        drop_remainder: drop a last partial batch (default: ``training``).
            Multi-replica validation needs it: Keras cannot split a batch
            smaller than the replica count.
        num_labels: ``None`` for the binary ``label``; the number of label
            names for the multi-hot ``labels``.

    Returns:
        A ``tf.data.Dataset``.

    Raises:
        ValueError: when no file matches, or balancing is asked for on a
            split that holds a single class.
    """
    files = _list_files(file_patterns)
    if num_labels is not None and training and balance != "none":
        raise ValueError(
            "Multi-label datasets are not balanced by the input pipeline (the "
            "loss weights each label). Received: balance="
            f"{balance!r}, num_labels={num_labels}"
        )
    ds = _shuffled_epochs(files, seed) if training else _records(files)

    def parse(serialized):
        if num_labels is None:
            ex = parse_example(serialized)
            return ex[F.IMAGE], tf.cast(tf.reshape(ex[F.LABEL], [1]), tf.float32)
        ex = parse_example(serialized, num_labels)
        check = tf.debugging.assert_non_negative(
            ex[F.LABELS],
            message=(
                f"a record has no '{F.LABELS}' feature: the multilabel task "
                "needs records of a multi-label source (chestxray14)"
            ),
        )
        with tf.control_dependencies([check]):
            labels = tf.cast(ex[F.LABELS], tf.float32)
        return ex[F.IMAGE], labels

    ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
    weights = None
    if training and balance in ("sample", "class_weight"):
        neg, pos = label_counts or count_labels(files)
        if neg == 0 or pos == 0:
            raise ValueError(
                "Class balancing needs both classes in the training split. "
                f"Received: negatives={neg}, positives={pos}"
            )
        if balance == "sample":
            # Each branch iterates the upstream on its own and so builds its
            # own shuffle (_shuffled_epochs): both see the same epoch orders,
            # one keeps the positives, the other the negatives.
            pos_ds = ds.filter(lambda png, y: y[0] > 0.5)
            neg_ds = ds.filter(lambda png, y: y[0] <= 0.5)
            ds = tf.data.Dataset.sample_from_datasets(
                [neg_ds, pos_ds], weights=[0.5, 0.5], seed=seed
            )
        else:
            total = float(neg + pos)
            weights = (total / (2.0 * neg), total / (2.0 * pos))

    def decode(png, label):
        return decode_and_resize(png, resolution), label

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
    if training and augment:
        ds = ds.enumerate().map(
            lambda i, xy: (
                augment_image(
                    xy[0],
                    tf.stack([tf.cast(seed, tf.int64), i]),
                    flip=num_labels is None,
                ),
                xy[1],
            ),
            num_parallel_calls=AUTOTUNE,
        )
    if weights is not None:
        w_neg, w_pos = weights
        ds = ds.map(lambda x, y: (x, y, tf.where(y[0] > 0.5, w_pos, w_neg)))
    if drop_remainder is None:
        drop_remainder = training
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(AUTOTUNE).with_options(options)
