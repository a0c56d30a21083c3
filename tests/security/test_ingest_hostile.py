"""The Beam ingest on hostile inputs: every manifest row is ingested or rejected
with its reason, with 1 and 2 workers."""

from __future__ import annotations

import csv
import os

import hostile_corpus as hc
import pytest

from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram
from morphhr_tf.data.ingest import run_ingest

SALT = "hostile-ingest-salt"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A CSV manifest over the targeted hostile files, every 60th derived
    file and the good synthetic and compressed mammograms."""
    folder = tmp_path_factory.mktemp("hostile_ingest")
    cases = hc.build_corpus(str(folder / "corpus"), seed=1)
    chosen = [
        c
        for i, c in enumerate(cases)
        if not c.patch  # patches cannot follow the files into Beam workers
        and (
            not c.name[:4].isdigit()
            or (c.kind == "original" and "_pydicom_" not in c.name)
            or i % 60 == 0
        )
    ]
    path = folder / "corpus" / "manifest.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "patient_id"])
        for i, case in enumerate(chosen):
            writer.writerow([case.name, i % 2, f"H{i // 3:04d}"])
    return str(path), chosen


def _direct_reason(path):
    try:
        read_mammogram(path, modalities=None)
    except DicomRejected as err:
        return str(err)
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers, mode", [(1, "processes"), (2, "processes"), (2, "threads")]
)
def test_ingested_plus_rejected_is_every_input(manifest, tmp_path, workers, mode):
    manifest_path, chosen = manifest
    out, private = tmp_path / "out", tmp_path / "private"
    summary = run_ingest(
        "csv",
        manifest_path,
        out,
        image_size=32,
        num_workers=workers,
        worker_mode=mode,
        salt=SALT,
        eval_fraction=0.25,
        modalities=None,
        progress=False,
        private_dir=private,
    )
    with open(out / "rejects.csv", newline="") as f:
        rejects = list(csv.DictReader(f))
    with open(private / "rejects_private.csv", newline="") as f:
        mapping = list(csv.DictReader(f))
    print(
        f"\nhostile ingest, {workers} worker(s), {summary['worker_mode']}: {len(chosen)} inputs, "
        f"{summary['ingested']} ingested, {len(rejects)} rejected "
        f"({summary['listing_problems']} at listing)"
    )
    assert summary["ingested"] + len(rejects) == len(chosen)
    assert summary["ingested"] + summary["rejected_images"] == summary["records"]
    assert summary["rejected"] == len(rejects)
    assert summary["records"] + summary["listing_problems"] == len(chosen)
    assert summary["ingested"] >= 8 and len(rejects) >= 60
    assert all(r["reason"].strip() for r in rejects)
    assert not [r for r in rejects if "internal error" in r["reason"]]
    # the private map has the same rows, in the same order, plus real paths
    assert [(m["image_key"], m["path"]) for m in mapping] == [
        (r["image_key"], r["path"]) for r in rejects
    ]
    by_path = {}
    for m in mapping:
        source = m["source_path"].split(": ", 1)[-1]
        by_path[os.path.basename(source)] = m["reason"]
    for case in chosen:
        direct = None if case.name not in by_path else _direct_reason(case.path)
        if case.kind in ("directory", "symlink-loop", "dangling-symlink", "fifo"):
            assert by_path[case.name] == "listing: file not found", case.name
        elif case.kind == "device":
            assert by_path[case.name] == "listing: file not found", case.name
        elif direct is not None:  # the reader's own reason reached the report
            assert by_path[case.name] == direct, case.name
        elif case.name in by_path:  # readable, refused later
            assert by_path[case.name].startswith("preprocessing: "), case.name
    # image keys: present for rejected images, absent for listing problems
    for r in rejects:
        assert bool(r["image_key"]) != r["reason"].startswith("listing: ")


def test_private_dir_inside_the_output_is_refused(manifest, tmp_path):
    manifest_path, _ = manifest
    with pytest.raises(ValueError, match="private_dir"):
        run_ingest(
            "csv",
            manifest_path,
            tmp_path / "out",
            private_dir=tmp_path / "out" / "private",
            progress=False,
        )
