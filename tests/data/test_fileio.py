"""Tests of morphhr_tf.data.fileio: the readers read URLs as they read local files.

fsspec's in-memory filesystem (``memory://``) stands in for a bucket: no
network (helpers in url_trees.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import fsspec
import numpy as np
import pydicom.data
import pytest
from url_trees import as_url, memory_root, upload

from morphhr_tf.data import fileio, load_source
from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram
from morphhr_tf.synthetic.cbis_ddsm import generate


@pytest.fixture
def memfs():
    """A fresh ``memory://`` root, restored after the test."""
    with memory_root() as root:
        yield root


# --- the DICOM reader --------------------------------------------------------


def _dicoms(folder, make_dicom) -> dict[str, tuple[str, dict]]:
    """name -> (local path, read_mammogram kwargs): varied mammogram-like files
    and pydicom's MR_small."""
    from pydicom.uid import RLELossless

    rng = np.random.default_rng(3)
    u12 = rng.integers(0, 4096, (40, 32), dtype=np.uint16)
    files = {
        "mono2.dcm": (make_dicom(folder / "mono2.dcm", u12, bits_stored=12), {}),
        "mono1_window.dcm": (
            make_dicom(
                folder / "mono1_window.dcm",
                u12,
                photometric="MONOCHROME1",
                bits_stored=12,
                window=(2000, 3000),
                voi_function="SIGMOID",
            ),
            {},
        ),
        "signed.dcm": (
            make_dicom(
                folder / "signed.dcm",
                rng.integers(-2000, 2000, (24, 20), dtype=np.int16),
                rescale=(2, -100),
            ),
            {},
        ),
        "rle.dcm": (
            make_dicom(
                folder / "rle.dcm", u12, bits_stored=12, transfer_syntax=RLELossless
            ),
            {},
        ),
    }
    mr = pydicom.data.get_testdata_file("MR_small.dcm")
    files["MR_small.dcm"] = (
        shutil.copy(mr, folder / "MR_small.dcm"),
        {"modalities": None},
    )
    return files


def test_read_mammogram_reads_a_url_like_the_local_file(tmp_path, memfs, make_dicom):
    files = _dicoms(tmp_path, make_dicom)
    upload(tmp_path, memfs)
    for name, (local, kwargs) in files.items():
        image, meta = read_mammogram(local, **kwargs)
        url_image, url_meta = read_mammogram(f"{memfs}/{name}", **kwargs)
        assert url_image.dtype == image.dtype and url_image.shape == image.shape
        assert float(np.max(np.abs(url_image - image))) == 0.0, name
        assert url_meta == meta, name
    # the spelling memory:///x names the same object as memory://x
    image, _ = read_mammogram(f"memory:///{memfs[len('memory://') :]}/mono2.dcm")
    assert np.array_equal(image, read_mammogram(files["mono2.dcm"][0])[0])


def _deflate_bomb(path: str, inflated_bytes: int) -> str:
    """tests/security/hostile_corpus.py's deflate bomb writer."""
    from pathlib import Path

    file = Path(__file__).parents[1] / "security" / "hostile_corpus.py"
    spec = importlib.util.spec_from_file_location("_fileio_hostile", file)
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look themselves up
        spec.loader.exec_module(module)
    return module._deflate_bomb(path, inflated_bytes)


def test_hostile_defences_apply_to_urls(tmp_path, memfs, make_dicom, monkeypatch):
    """The type, size and deflate checks reject a URL as they reject the file,
    before any pixel is decoded."""
    import morphhr_tf.data.dicom_reader as reader

    make_dicom(tmp_path / "big.dcm", np.zeros((64, 64), dtype=np.uint16))
    _deflate_bomb(str(tmp_path / "bomb.dcm"), 256 << 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "not_dicom.dcm").write_bytes(b"hello " * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.dcm").write_bytes(b"x")
    upload(tmp_path, memfs)
    cases = {  # name -> (max_pixels, header slack)
        "big.dcm": (1000, 0),  # the file size check, not the header's
        "bomb.dcm": (100, reader._HEADER_SLACK),
        "empty.dcm": (1000, reader._HEADER_SLACK),
        "not_dicom.dcm": (1000, reader._HEADER_SLACK),
        "missing.dcm": (1000, reader._HEADER_SLACK),
        "sub": (1000, reader._HEADER_SLACK),
    }
    reasons = {}
    for name, (max_pixels, slack) in cases.items():
        monkeypatch.setattr(reader, "_HEADER_SLACK", slack)
        for where in (str(tmp_path / name), f"{memfs}/{name}"):
            with pytest.raises(DicomRejected) as err:
                read_mammogram(where, modalities=None, max_pixels=max_pixels)
            reasons.setdefault(name, []).append(str(err.value))
    for name, (local, url) in reasons.items():
        assert url == local, name
    assert reasons["big.dcm"][0].startswith("file of 0 MiB exceeds")
    assert "decompression bomb" in reasons["bomb.dcm"][0]
    assert reasons["empty.dcm"][0] == "empty file"
    assert reasons["not_dicom.dcm"][0].startswith("not a DICOM file")
    assert reasons["missing.dcm"][0] == "unreadable file: No such file or directory"
    assert reasons["sub"][0] == "is a directory, not a file"


# --- the adapters -------------------------------------------------------------


def _same_listing(local, remote, local_root, url_root: str) -> None:
    """``remote`` lists what ``local`` does, with URLs for paths."""
    assert len(remote.records) == len(local.records) > 0
    for a, b in zip(local.records, remote.records, strict=True):
        assert b.path == as_url(a.path, local_root, url_root)
        assert b.label == a.label and b.patient_id == a.patient_id
        assert (b.view, b.laterality, b.density) == (a.view, a.laterality, a.density)
        assert (b.split, b.dataset, b.abnormality) == (
            a.split,
            a.dataset,
            a.abnormality,
        )
        assert b.image_id == a.image_id
    shown = [
        (as_url(w, local_root, url_root) if os.path.isabs(w) else w, r)
        for w, r in local.problems
    ]
    assert remote.problems == shown


@pytest.mark.parametrize("layout", ["uid", "date", "date_v2"])
@pytest.mark.parametrize("metadata", [True, False])
def test_cbis_ddsm_lists_a_url_tree_like_the_local_tree(
    tmp_path, memfs, layout, metadata
):
    generate(tmp_path, patients=2, seed=5, rows=64, layout=layout, metadata=metadata)
    # a missing full image and an unlisted file: problems must match too
    local = load_source("cbis_ddsm", tmp_path)
    os.remove(local.records[0].path)
    os.makedirs(tmp_path / "stray")
    shutil.copy(local.records[1].path, tmp_path / "stray" / "x.dcm")
    local = load_source("cbis_ddsm", tmp_path)
    upload(tmp_path, memfs)
    remote = load_source("cbis_ddsm", memfs + "/")  # a trailing / is fine
    _same_listing(local, remote, tmp_path, memfs)
    assert local.problems  # the comparison covered problems


def _manifest_tree(root, make_dicom) -> None:
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    (root / "images" / "p1").mkdir(parents=True)
    for name in ("a.dcm", "b.dcm", "orphan.dcm"):
        make_dicom(root / "images" / "p1" / name, pixels)
    (root / "manifest.csv").write_text(
        "path,label,patient_id,view,laterality,split\n"
        "images/p1/b.dcm,1,p1,MLO,R,test\n"
        "images/p1/a.dcm,0,p1,CC,left,train\n"
        "images/p1/gone.dcm,0,p1,CC,L,\n"
        "images/p1/a.dcm,0,p1,CC,L,\n"
    )


def test_csv_manifest_lists_a_url_tree_like_the_local_tree(tmp_path, memfs, make_dicom):
    _manifest_tree(tmp_path, make_dicom)
    upload(tmp_path, memfs)
    local = load_source(
        "csv", tmp_path / "manifest.csv", images_dir=tmp_path / "images"
    )
    remote = load_source("csv", f"{memfs}/manifest.csv", images_dir=f"{memfs}/images")
    _same_listing(local, remote, tmp_path, memfs)
    assert [r for _, r in remote.problems] == [
        "file not found",
        "duplicate row for a listed file",
        "image file that no manifest row lists",
    ]


def test_a_local_manifest_may_list_urls(tmp_path, memfs, make_dicom):
    _manifest_tree(tmp_path, make_dicom)
    upload(tmp_path, memfs)
    (tmp_path / "urls.csv").write_text(
        f"path,label,patient_id\n{memfs}/images/p1/a.dcm,1,p1\n"
    )
    listing = load_source("csv", tmp_path / "urls.csv")
    assert [r.path for r in listing.records] == [f"{memfs}/images/p1/a.dcm"]
    assert listing.problems == []


def test_rsna_and_vindr_list_a_url_tree_like_the_local_tree(
    tmp_path, memfs, make_dicom
):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    rsna, vindr = tmp_path / "rsna", tmp_path / "vindr"
    (rsna / "train_images" / "7").mkdir(parents=True)
    (vindr / "images" / "s1").mkdir(parents=True)
    for path in ("train_images/7/1.dcm", "train_images/7/2.dcm"):
        make_dicom(rsna / path, pixels)
    for path in ("images/s1/i1.dicom", "images/s1/i2.dicom"):
        make_dicom(vindr / path, pixels)
    (rsna / "train.csv").write_text(
        "patient_id,image_id,laterality,view,cancer,density\n"
        "7,1,L,CC,1,b\n7,3,R,MLO,0,\n"
    )
    (vindr / "breast-level_annotations.csv").write_text(
        "study_id,image_id,laterality,view_position,breast_birads,"
        "breast_density,split\n"
        "s1,i1,L,CC,BI-RADS 4,DENSITY C,training\n"
        "s1,i9,R,CC,BI-RADS 2,DENSITY C,test\n"
    )
    upload(tmp_path, memfs)
    for source in ("rsna", "vindr"):
        local = load_source(source, tmp_path / source)
        remote = load_source(source, f"{memfs}/{source}")
        _same_listing(local, remote, tmp_path, memfs)
        assert len(remote.problems) == 2


# --- errors and the path helpers -----------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed"
)
def test_a_missing_protocol_package_is_named():
    url = "gs://some-bucket/cbis/1-1.dcm"
    message = r"gs:// needs gcsfs: pip install gcsfs \(to read 'gs://some-bucket"
    with pytest.raises(fileio.MissingFilesystem, match=message):
        fileio.open_file(url)
    with pytest.raises(ImportError, match=message):  # not a rejected image
        read_mammogram(url)
    with pytest.raises(ImportError, match=r"gs:// needs gcsfs"):
        load_source("cbis_ddsm", "gs://some-bucket/cbis")


def test_an_unknown_protocol_is_rejected():
    with pytest.raises(ValueError, match=r"unknown protocol nope:// in 'nope://x/y'"):
        fileio.exists("nope://x/y")
    with pytest.raises(DicomRejected, match="invalid path"):
        read_mammogram("nope://x/y.dcm")


@pytest.mark.parametrize(
    "path",
    ["/data/cbis/a.dcm", "rel/dir/", "/data/../x/./y", "plain", "/"],
)
def test_local_paths_are_the_os_functions(path):
    assert not fileio.is_url(path)
    assert fileio.join(path, "b", "c.dcm") == os.path.join(path, "b", "c.dcm")
    assert fileio.dirname(path) == os.path.dirname(path)
    assert fileio.basename(path) == os.path.basename(path)
    assert fileio.normpath(path) == os.path.normpath(path)
    assert fileio.abspath(path) == os.path.abspath(path)
    assert fileio.parts(path) == path.split(os.sep)
    assert fileio.parts(os.path.abspath(path), "/data") == (
        os.path.relpath(os.path.abspath(path), "/data").split(os.sep)
    )


def test_url_helpers_keep_the_url():
    url = "gs://bucket/cbis"
    assert fileio.is_url(url) and fileio.is_url("memory://x")
    assert not fileio.is_url("C:\\data") and not fileio.is_url("a/b://c")
    assert (
        fileio.join(url, "Mass-Test_P_1/1.dcm")
        == "gs://bucket/cbis/Mass-Test_P_1/1.dcm"
    )
    assert fileio.join("/local/base", url, "x") == "gs://bucket/cbis/x"
    assert fileio.dirname(url + "/a/1.dcm") == "gs://bucket/cbis/a"
    assert fileio.basename(url + "/a/1.dcm") == "1.dcm"
    assert fileio.normpath(url + "/a/../b/./c/") == "gs://bucket/cbis/b/c"
    assert fileio.abspath(url + "/") == url
    assert fileio.parts(url + "/a/1.dcm") == ["bucket", "cbis", "a", "1.dcm"]
    assert fileio.parts(url + "/a/1.dcm", url) == ["a", "1.dcm"]


def test_url_files_open_stat_and_walk(memfs):
    fs, inner = fsspec.core.url_to_fs(memfs)
    fs.pipe(f"{inner}/a/b.txt", "é,1\r\n".encode("utf-8-sig"))
    fs.pipe(f"{inner}/a/c/d.bin", b"\0" * 5)
    assert fileio.info(f"{memfs}/a/c/d.bin") == ("file", 5)
    assert fileio.info(f"{memfs}/a/c")[0] == "directory"
    assert fileio.isdir(f"{memfs}/a") and fileio.isfile(f"{memfs}/a/b.txt")
    assert fileio.exists(memfs) and not fileio.exists(f"{memfs}/zz")
    with pytest.raises(FileNotFoundError) as err:
        fileio.info(f"{memfs}/zz")
    assert err.value.strerror == "No such file or directory"
    with fileio.open_file(
        f"{memfs}/a/b.txt", "r", newline="", encoding="utf-8-sig"
    ) as f:
        assert f.read() == "é,1\r\n"
    walked = sorted(fileio.walk(memfs))
    assert walked == [
        (memfs, ["a"], []),
        (f"{memfs}/a", ["c"], ["b.txt"]),
        (f"{memfs}/a/c", [], ["d.bin"]),
    ]
    assert list(fileio.walk(f"{memfs}/zz")) == []


def test_regular_file_size_gives_the_readers_reasons(tmp_path):
    import pytest

    from morphhr_tf.data import fileio

    path = tmp_path / "a.bin"
    path.write_bytes(b"12345")
    assert fileio.regular_file_size(str(path)) == 5
    cases = {
        str(tmp_path): "is a directory, not a file",
        str(tmp_path / "missing"): "unreadable file: No such file or directory",
        str(tmp_path) + "/nul\0name": "invalid path (ValueError:",
    }
    for bad, reason in cases.items():
        with pytest.raises(fileio.UnreadablePath) as err:
            fileio.regular_file_size(bad)
        assert str(err.value).startswith(reason), str(err.value)
