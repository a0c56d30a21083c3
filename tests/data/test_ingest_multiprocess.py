"""The Beam ingest on the multi-process runner: same records as in process.

``run_ingest(num_workers=2)`` runs Beam's ``FnApiRunner`` in
``multi_processing`` mode (one OS process per worker, the portable Fn API
between them), the path the portable runners (Dataflow, Flink, Spark) take.
Its output must hold exactly the records of the one-worker run, split by
split, whatever their order.
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


def _ingest(tree, out, workers, monkeypatch):
    """Runs the ingest; returns its summary and the pids that encoded records.

    Each worker appends to ``<pid>.progress`` in the ingest's scratch folder
    as it encodes; the folder is listed just before ``run_ingest`` removes it.
    """
    pids = set()

    def listing_rmtree(path, *args, **kwargs):
        progress = os.path.join(path, "progress")
        if os.path.isdir(progress):
            pids.update(int(n.split(".")[0]) for n in os.listdir(progress))
        return _RMTREE(path, *args, **kwargs)

    monkeypatch.setattr(ingest.shutil, "rmtree", listing_rmtree)
    summary = ingest.run_ingest(
        "cbis_ddsm",
        tree,
        out,
        image_size=48,
        num_workers=workers,
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

    assert one_pids == {os.getpid()}  # in process
    assert two_pids and os.getpid() not in two_pids  # in worker processes
    assert two["num_workers"] == 2
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
        f"2-worker run encoded in {len(two_pids)} worker process(es)"
    )
