"""No PHI at the ingest level: after the ingest CLI runs on a synthetic tree
(with rejected files and listing problems), no identifier appears in any byte
of its outputs (raw and gunzipped) or of its stdout/stderr."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys

import pytest
from phi_values import CSVS, identifiers, read_blobs, scan

from morphhr_tf.data.ingest import PRIVATE_REJECTS_FILE

SALT = "phi-test-salt-0b7e44"


@pytest.fixture(scope="module")
def ingest_run(cbis_tree, tmp_path_factory):
    """The CLI on a copy of the tree with 2 broken images, an unlisted file and
    a CSV row whose file is missing; stdout and stderr captured."""
    work = tmp_path_factory.mktemp("phi")
    root = work / "tree"
    shutil.copytree(cbis_tree[0], root)
    full = sorted(
        os.path.join(d, n)
        for d, _, files in os.walk(root)
        for n in files
        if n.endswith(".dcm") and re.search(r"_(CC|MLO)[/\\]", d + "/")
    )
    with open(full[0], "r+b") as f:
        f.truncate(os.path.getsize(full[0]) // 2)
    with open(full[1], "wb") as f:
        f.write(b"not a DICOM file")
    stray = os.path.join(os.path.dirname(full[2]), "1-9.dcm")
    shutil.copy(full[2], stray)  # a full image no CSV row lists
    with open(root / CSVS[0], "a", newline="") as f:
        csv.writer(f).writerow(
            ["P_99917", "2", "LEFT", "CC", "1", "mass", "OVAL", "CIRCUMSCRIBED"]
            + ["3", "BENIGN", "3"]
            + [
                "Mass-Training_P_99917_LEFT_CC/1.2.826.0.1.3680043.8.498.1/"
                "1.2.826.0.1.3680043.8.498.2/000000.dcm",
                "",
                "",
            ]
        )
    out, private = work / "out", work / "private"
    env = {**os.environ, "MORPHHR_SALT": SALT}
    proc = subprocess.run(
        [sys.executable, "-m", "morphhr_tf.data.ingest", "--source", "cbis_ddsm"]
        + ["--root", str(root), "--out", str(out), "--image-size", "32"]
        + ["--private-dir", str(private)],
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return root, out, private, proc


@pytest.mark.slow
def test_no_identifier_in_any_output_byte_or_log(ingest_run, cbis_tree):
    root, out, private, proc = ingest_run
    secrets = identifiers(cbis_tree[0])  # the pristine tree's identifiers
    secrets |= {"P_99917", "Mass-Training_P_99917_LEFT_CC"}
    assert len(secrets) >= 6 * 7
    needles = {s.encode() for s in secrets} | {SALT.encode()}
    blobs = {"stdout": proc.stdout, "stderr": proc.stderr, **read_blobs([out])}
    assert any(k.endswith("(gunzipped)") for k in blobs)
    hits = scan(blobs, {n.decode() for n in needles})
    scanned = sum(len(b) for b in blobs.values())
    print(
        f"\nPHI scan: {len(needles)} values x {len(blobs)} blobs "
        f"({scanned} bytes): {len(hits)} hits"
    )
    assert not hits, hits[:10]
    assert scanned > 20_000 and b"ingest" in proc.stderr  # the progress bar


@pytest.mark.slow
def test_rejects_identify_inputs_without_identifiers(ingest_run):
    root, out, private, _ = ingest_run
    with open(out / "rejects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image_key", "path", "reason"]
    reasons = [r["reason"] for r in rows]
    assert any(r.startswith("truncated") for r in reasons)
    assert any(r.startswith("not a DICOM file") for r in reasons)
    assert any("no CSV row lists" in r for r in reasons)
    assert any("file not found" in r or "case folder" in r for r in reasons)
    assert all(
        re.fullmatch(r"[0-9a-f]{64}", r["image_key"])
        for r in rows
        if not r["reason"].startswith("listing: ")
    )
    assert all(re.search(r"_p[0-9a-f]{12}_", r["path"]) for r in rows)
    # the private map (outside the output folder) leads back to the files
    assert not os.path.exists(out / PRIVATE_REJECTS_FILE)
    with open(private / PRIVATE_REJECTS_FILE, newline="") as f:
        mapping = list(csv.DictReader(f))
    assert [m["path"] for m in mapping] == [r["path"] for r in rows]
    files = [m["source_path"] for m in mapping if os.path.isabs(m["source_path"])]
    assert files and all(os.path.exists(p) for p in files)
    assert any("_P_" in m["source_path"] for m in mapping)
