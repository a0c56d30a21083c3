"""The Beam ingest reads ``memory://`` records as it reads the local files:
the same examples, byte for byte, and the same reject reasons."""

from __future__ import annotations

import glob
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from url_trees import as_url, memory_root, upload

from morphhr_tf import runtime
from morphhr_tf.data import ImageRecord, load_source
from morphhr_tf.data.ingest import IngestExamples
from morphhr_tf.synthetic.cbis_ddsm import generate

SALT = "test-salt-url"


@pytest.fixture
def memfs():
    """A fresh ``memory://`` root, restored after the test."""
    with memory_root() as root:
        yield root


def _ingest(records: list[ImageRecord], folder) -> dict[str, list]:
    """Sorted ``examples`` and ``rejects`` of IngestExamples, run in process
    (one worker, so the in-memory filesystem is shared)."""
    with beam.Pipeline(options=PipelineOptions(runtime.beam_pipeline_args(1))) as p:
        result = p | beam.Create(records) | IngestExamples(32, SALT, eval_fraction=0.0)
        for tag in ("examples", "rejects"):
            _ = (
                result[tag]
                | f"Json{tag}" >> beam.MapTuple(lambda k, v: json.dumps([k, _text(v)]))
                | f"Write{tag}" >> beam.io.WriteToText(str(folder / tag))
            )
    return {
        tag: sorted(
            json.loads(line)
            for name in glob.glob(str(folder / f"{tag}*"))
            for line in open(name)
        )
        for tag in ("examples", "rejects")
    }


def _text(value) -> str:
    return value.hex() if isinstance(value, bytes) else value


def test_ingest_of_url_records_equals_the_local_ingest(tmp_path, memfs):
    generate(tmp_path, patients=2, seed=5, rows=64)
    (tmp_path / "text.dcm").write_text("not dicom")
    upload(tmp_path, memfs)
    local = load_source("cbis_ddsm", tmp_path).records
    remote = load_source("cbis_ddsm", memfs).records
    assert [r.path for r in remote] == [as_url(r.path, tmp_path, memfs) for r in local]
    bad = [("missing.dcm", "X1"), ("text.dcm", "X2")]
    local += [ImageRecord(str(tmp_path / n), 0, pid) for n, pid in bad]
    remote += [ImageRecord(f"{memfs}/{n}", 0, pid) for n, pid in bad]
    (tmp_path / "out_url").mkdir()
    (tmp_path / "out_local").mkdir()
    got = _ingest(remote, tmp_path / "out_url")
    want = _ingest(local, tmp_path / "out_local")
    assert len(got["examples"]) == len(want["examples"]) == 8
    assert got["examples"] == want["examples"]  # image keys come from image_id
    assert [r for _, r in got["rejects"]] == [r for _, r in want["rejects"]]
    assert [p for p, _ in got["rejects"]] == [f"{memfs}/{n}" for n, _ in bad]
