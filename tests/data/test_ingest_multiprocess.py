"""The Beam ingest with two workers: same records as in process.

``run_ingest(num_workers=2)`` runs Beam's ``FnApiRunner`` in
``multi_processing`` mode (one OS process per worker, the portable Fn API
between them), the path the portable runners (Dataflow, Flink, Spark) take;
``worker_mode="threads"`` in ``multi_threading`` mode (worker threads of this
process). Either output must hold exactly the records of the one-worker run,
split by split, whatever their order.
"""

from __future__ import annotations

import collections
import glob
import os
import shutil

import pytest
import tensorflow as tf

from morphhr_tf.data import ingest

SALT = "multiprocess-test-salt"
_RMTREE = shutil.rmtree


def _records(out_dir, split) -> collections.Counter:
    """The split's tf.Examples as a multiset of canonical feature tuples."""
    files = sorted(glob.glob(os.path.join(out_dir, f"Split-{split}", "data-*.gz")))
    assert files, split
    found = collections.Counter()
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(raw.numpy())
        features = []
        for key, feature in sorted(example.features.feature.items()):
            kind = feature.WhichOneof("kind")
            features.append((key, kind, tuple(getattr(feature, kind).value)))
        found[tuple(features)] += 1
    return found


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from morphhr_tf.synthetic.cbis_ddsm import generate

    root = tmp_path_factory.mktemp("cbis_mp")
    generate(root, patients=4, seed=0, rows=256)
    return root


def _ingest(tree, out, workers, monkeypatch, mode="processes"):
    """Runs the ingest; returns its summary and the (pid, thread id) pairs
    that encoded records.

    Each worker appends to ``<pid>.<thread id>.progress`` in the ingest's
    scratch folder as it encodes; the folder is listed just before
    ``run_ingest`` removes it.
    """
    pids = set()

    def listing_rmtree(path, *args, **kwargs):
        progress = os.path.join(path, "progress")
        if os.path.isdir(progress):
            for name in os.listdir(progress):
                pid, thread, _ = name.split(".")
                pids.add((int(pid), int(thread)))
        return _RMTREE(path, *args, **kwargs)

    monkeypatch.setattr(ingest.shutil, "rmtree", listing_rmtree)
    summary = ingest.run_ingest(
        "cbis_ddsm",
        tree,
        out,
        image_size=48,
        num_workers=workers,
        worker_mode=mode,
        salt=SALT,
        eval_fraction=0.4,  # with this salt: 4 train, 4 eval, 8 test records
        progress=False,
    )
    return summary, pids


@pytest.mark.slow
def test_two_worker_processes_write_the_same_records_as_one(
    tree, tmp_path, monkeypatch
):
    one, one_pids = _ingest(tree, tmp_path / "one", 1, monkeypatch)
    two, two_pids = _ingest(tree, tmp_path / "two", 2, monkeypatch)

    assert {pid for pid, _ in one_pids} == {os.getpid()}  # in process
    assert two_pids and os.getpid() not in {pid for pid, _ in two_pids}
    assert (two["num_workers"], two["worker_mode"]) == (2, "processes")
    assert one["worker_mode"] == "in_process"
    assert one["records"] == two["records"] == 16
    assert one["rejected"] == two["rejected"] == 0
    assert one["per_split_label"] == two["per_split_label"]
    lines = []
    for split in ("train", "eval", "test"):
        a = _records(tmp_path / "one", split)
        b = _records(tmp_path / "two", split)
        assert a == b, split
        assert sum(a.values()) == one["per_split"][split] > 0
        lines.append(f"{split} {sum(a.values())}/{sum(b.values())}")
    assert sum(one["per_split"].values()) == 16
    print(
        "\ningest, 1 vs 2 worker processes (records per split, equal as "
        f"multisets of parsed tf.Examples): {', '.join(lines)}; "
        f"2-worker run encoded in {len({pid for pid, _ in two_pids})} worker process(es)"
    )


@pytest.mark.slow
def test_two_worker_threads_write_the_same_records_as_one(tree, tmp_path, monkeypatch):
    one, _ = _ingest(tree, tmp_path / "one", 1, monkeypatch)
    two, two_pids = _ingest(tree, tmp_path / "two", 2, monkeypatch, mode="threads")

    assert {pid for pid, _ in two_pids} == {os.getpid()}  # threads of this process
    assert (two["num_workers"], two["worker_mode"]) == (2, "threads")
    assert one["per_split_label"] == two["per_split_label"]
    assert two["records"] == two["ingested"] == 16 and two["rejected"] == 0
    for split in ("train", "eval", "test"):
        a = _records(tmp_path / "one", split)
        assert a == _records(tmp_path / "two", split), split
        assert sum(a.values()) == one["per_split"][split] > 0
    print(f"\n2 worker threads: records encoded in {len(two_pids)} thread(s)")


def test_an_unknown_worker_mode_is_refused_before_the_output_is_touched(tree, tmp_path):
    out = tmp_path / "out"
    (out / "Split-train").mkdir(parents=True)
    kept = out / "Split-train" / "data-00000-of-00001.gz"
    kept.write_bytes(b"an earlier ingest")
    with pytest.raises(ValueError, match=r"worker_mode must be one of .*'fibers'"):
        ingest.run_ingest("cbis_ddsm", tree, out, num_workers=2, worker_mode="fibers")
    assert kept.read_bytes() == b"an earlier ingest"
