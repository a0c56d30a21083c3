"""The reader on a hostile corpus: a valid image or DicomRejected, nothing else.

The corpus (about 2000 files, built in a temp dir) is read in guarded child
processes: an address-space limit, a per-file deadline and a peak-RSS check
(see ``hostile_corpus.py``). ``pytest -s`` prints the counts.
"""

from __future__ import annotations

import os

import hostile_corpus as hc
import numpy as np
import pytest

import morphhr_tf.data.dicom_reader as reader


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    cases = hc.build_corpus(str(folder / "corpus"), seed=0)
    results = hc.run_corpus(cases)
    return {r["name"]: r for r in results}


@pytest.mark.slow
def test_every_hostile_file_is_read_or_rejected(outcomes):
    counts = hc.count(list(outcomes.values()))
    print(
        "\nhostile DICOM corpus: {files} files, {valid} valid, "
        "{rejected} rejected, {crashed} crashed".format(**counts)
    )
    crashed = [
        f"{name}: {r['reason']}"
        for name, r in outcomes.items()
        if r["status"] == "crashed"
    ]
    assert not crashed, crashed[:20]
    assert counts["files"] >= 1500
    assert counts["valid"] >= 100 and counts["rejected"] >= 1000
    for r in outcomes.values():
        if r["status"] == "rejected":
            assert r["reason"].strip() and "\n" not in r["reason"]
    slowest = max(r["seconds"] for r in outcomes.values())
    assert slowest < hc.PER_FILE_SECONDS


def _status(outcomes, name):
    r = outcomes[name]
    return r["status"], r["reason"]


@pytest.mark.slow
def test_good_images_stay_valid(outcomes):
    good = [
        n
        for n, r in outcomes.items()
        if r["kind"] == "original" and ("_synthetic_" in n or "_mg_" in n)
    ]
    assert len(good) == 7
    assert all(outcomes[n]["status"] == "valid" for n in good), good


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("attr_no_pixeldata.dcm", "no PixelData"),
        ("attr_bits_stored_17.dcm", "BitsStored=17 does not fit"),
        ("attr_bits_allocated_12.dcm", "BitsAllocated=12 is not supported"),
        ("attr_rows_double.dcm", "truncated pixel data"),
        ("attr_columns_plus1.dcm", "truncated pixel data"),
        ("bomb_declared_65535x65535.dcm", "exceeds the 200 MP limit"),
        ("bomb_declared_14000x14000.dcm", "truncated pixel data"),
        ("bomb_j2k_codestream_60000x60000.dcm", "frame is 60000x60000"),
        ("bomb_j2k_header_14000x14000.dcm", "header declares 14000x14000"),
        ("bomb_sof_65535x65535_JPGExtended.dcm", "frame is 65535x65535"),
        (
            "bomb_sof_65535x65535_JPEGLSNearLossless_16.dcm",
            "frame is 65535x65535",
        ),
        ("bomb_rle_header_14000x14000.dcm", "cannot fill 14000x14000"),
        ("bomb_deflate_1GiB.dcm", "decompression bomb"),
        ("nodecoder_JPEG2000.dcm", "no decoder available"),
        ("nodecoder_mg_j2k.dcm", "no decoder available"),
        ("nodecoder_JPGExtended.dcm", "no decoder available"),
        ("text.dcm", "not a DICOM file"),
        ("empty.dcm", "empty file"),
        ("directory.dcm", "is a directory"),
        ("loop_a.dcm", "Too many levels of symbolic links"),
        ("self.dcm", "Too many levels of symbolic links"),
        ("dangling.dcm", "No such file"),
        ("dev_zero.dcm", "not a regular file"),
        ("fifo.dcm", "not a regular file"),
        ("denied.dcm", "Permission denied"),
    ],
)
def test_targeted_cases_are_rejected_with_their_reason(outcomes, name, reason):
    status, why = _status(outcomes, name)
    assert status == "rejected", (name, why)
    assert reason in why


@pytest.mark.slow
def test_a_4_gib_element_length_reads_only_the_file(outcomes):
    # PixelData claims 0xFFFFFFF0 bytes; the reader clamps every read to the
    # bytes the file has (CPython would allocate the claimed size first), and
    # here the pixel data that is present is complete: a valid image.
    assert _status(outcomes, "bomb_pixeldata_length_4GiB.dcm") == ("valid", "")
    assert outcomes["bomb_pixeldata_length_4GiB.dcm"]["rss_growth"] < 64 << 20


@pytest.mark.slow
def test_chmod_000_depends_on_who_reads(outcomes):
    # As root (these tests run as root) chmod 000 does not block reads, so the
    # file is an ordinary valid mammogram; the denial is covered by denied.dcm
    # (open() patched to raise PermissionError). As another user it is rejected.
    status, why = _status(outcomes, "chmod000.dcm")
    if os.geteuid() == 0:
        assert status == "valid", why
    else:
        assert status == "rejected" and "Permission denied" in why


def test_check_one_reports_a_crash_of_the_reader(tmp_path, monkeypatch):
    """The harness itself can fail: an exception other than DicomRejected."""

    path = hc.write_mg(str(tmp_path / "ok.dcm"), np.zeros((8, 8), np.uint16))
    assert hc.check_one(path, modalities=None)["status"] == "valid"

    def boom(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(reader, "_read", boom)
    outcome = hc.check_one(path, modalities=None)
    assert outcome["status"] == "crashed" and "KeyError" in outcome["reason"]


def test_worker_death_and_hang_count_as_crashes(tmp_path, monkeypatch):
    """A read that blocks SIGALRM and sleeps is killed by the parent, counted
    as one crashed case, and the run goes on with the next file."""

    good = hc.write_mg(str(tmp_path / "good.dcm"), np.zeros((8, 8), np.uint16))
    cases = [
        hc.Case("good1", good, "original"),
        hc.Case("hang", good, "original", patch=hc.PATCH_HANG),
        hc.Case("good2", good, "original"),
    ]
    monkeypatch.setattr(hc, "PER_FILE_SECONDS", 1)
    results = hc.run_corpus(cases, startup_seconds=60)
    assert [r["status"] for r in results] == ["valid", "crashed", "valid"]
    assert "hang" in results[1]["reason"]
