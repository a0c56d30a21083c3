"""canonicalize_split: the files and the record order depend on the records alone."""

import gzip
import hashlib
import os
import random

import pytest
import tensorflow as tf
from apache_beam.io.tfrecordio import _TFRecordUtil

from morphhr_tf.data.record_order import canonicalize_split

RECORDS = [f"record {i} ".encode() * (1 + i % 7) for i in range(60)]


def _write(folder, parts, prefix="data-"):
    os.makedirs(folder, exist_ok=True)
    for i, part in enumerate(parts):
        name = os.path.join(folder, f"{prefix}{i:05d}-of-{len(parts):05d}.gz")
        with gzip.open(name, "wb") as f:
            for record in part:
                _TFRecordUtil.write_record(f, record)


def _scattered(records, files, seed):
    """``records`` in a random order, cut into ``files`` files."""
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i::files] for i in range(files)]


def _tf_read(files):
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _contents(folder):
    return {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}


def test_two_layouts_of_the_same_records_give_the_same_bytes(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _write(a, _scattered(RECORDS, 3, seed=1))
    _write(b, _scattered(RECORDS, 1, seed=2))
    # The two layouts differ in files and in order.
    assert _tf_read([os.path.join(a, n) for n in sorted(_contents(a))]) != _tf_read(
        [os.path.join(b, n) for n in sorted(_contents(b))]
    )
    shard = sum(map(len, RECORDS)) // 4 + 1  # 4 files
    got_a = canonicalize_split(a, shard_bytes=shard)
    got_b = canonicalize_split(b, shard_bytes=shard)
    assert _contents(a) == _contents(b)
    assert sorted(_contents(a)) == [f"data-{i:05d}-of-00004.gz" for i in range(4)]
    assert got_a.records == got_b.records == len(RECORDS)
    assert got_a.bytes == sum(map(len, RECORDS))
    # TensorFlow reads them (checksums included), every record once, in
    # SHA-256 order across the files.
    read = _tf_read(list(got_a.files))
    assert sorted(read) == sorted(RECORDS)
    assert read == sorted(RECORDS, key=lambda r: hashlib.sha256(r).digest())


def test_duplicates_are_kept_and_other_files_left_alone(tmp_path):
    folder = str(tmp_path)
    records = RECORDS[:5] + RECORDS[:2]
    _write(folder, _scattered(records, 2, seed=3), prefix="data_tfrecord-")
    (tmp_path / "notes.txt").write_text("kept")
    got = canonicalize_split(folder, prefix="data_tfrecord-")
    assert got.records == 7
    assert sorted(_tf_read(list(got.files))) == sorted(records)
    assert sorted(os.listdir(folder)) == [
        "data_tfrecord-00000-of-00001.gz",
        "notes.txt",
    ]


@pytest.mark.parametrize("exists", [True, False])
def test_an_empty_split_becomes_one_empty_file(tmp_path, exists):
    folder = tmp_path / "Split-test"
    if exists:
        _write(str(folder), [[]])
    else:
        folder.mkdir()
    got = canonicalize_split(str(folder))
    assert (got.records, got.bytes) == (0, 0)
    assert os.listdir(folder) == ["data-00000-of-00001.gz"]
    assert _tf_read(list(got.files)) == []


def test_a_truncated_input_is_refused_and_nothing_is_removed(tmp_path):
    folder = str(tmp_path)
    _write(folder, _scattered(RECORDS, 2, seed=4))
    victim = os.path.join(folder, "data-00001-of-00002.gz")
    with gzip.open(victim, "rb") as f:
        raw = f.read()
    with gzip.open(victim, "wb") as f:
        f.write(raw[: len(raw) - 5])
    before = _contents(folder)
    with pytest.raises(
        ValueError, match="data-00001-of-00002.gz is not a complete TFRecord file"
    ):
        canonicalize_split(folder)
    assert _contents(folder) == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_shard_bytes_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ValueError, match=f"Received: {bad!r}"):
        canonicalize_split(str(tmp_path), shard_bytes=bad)


def test_uncompressed_inputs_give_the_same_files_as_gzip_ones(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _write(a, _scattered(RECORDS, 2, seed=5))
    os.makedirs(b)
    for i, part in enumerate(_scattered(RECORDS, 3, seed=6)):
        with open(os.path.join(b, f"data-{i:05d}-of-00003"), "wb") as f:
            for record in part:
                _TFRecordUtil.write_record(f, record)
    canonicalize_split(a)
    canonicalize_split(b)
    assert _contents(a) == _contents(b)
    assert list(_contents(b)) == ["data-00000-of-00001.gz"]


def test_a_url_folder_and_tensorflow_s_file_system_give_the_same_files(tmp_path):
    import fsspec

    from morphhr_tf.data.record_order import SplitFiles

    local = str(tmp_path / "local")
    _write(local, _scattered(RECORDS, 2, seed=7))
    url = "memory://morphhr-record-order/split"
    memory = fsspec.filesystem("memory")
    for i, part in enumerate(_scattered(RECORDS, 3, seed=8)):
        with memory.open(f"/morphhr-record-order/split/data-{i}.gz", "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb") as f:
                for record in part:
                    _TFRecordUtil.write_record(f, record)
    gfile = SplitFiles(
        names=tf.io.gfile.listdir, open=tf.io.gfile.GFile, remove=tf.io.gfile.remove
    )
    try:
        got = canonicalize_split(url)
        canonicalize_split(local, files=gfile)
        assert got.files == (f"{url}/data-00000-of-00001.gz",)
        assert memory.ls("/morphhr-record-order/split", detail=False) == [
            "/morphhr-record-order/split/data-00000-of-00001.gz"
        ]
        with memory.open("/morphhr-record-order/split/data-00000-of-00001.gz") as f:
            assert f.read() == _contents(local)["data-00000-of-00001.gz"]
    finally:
        memory.rm("/morphhr-record-order", recursive=True)
