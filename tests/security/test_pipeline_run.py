"""The local pipeline, end to end, as an operator runs it: killed during
training (SIGTERM, then SIGKILL), rerun to completion, then run again after
the cached eval split's files were lost from storage, so the Trainer fails
inside the component. (A broken *config* never gets that far: the runner
refuses it before any component runs, ``tests/pipelines/test_local_runner.py``.)
One set of runs (a module fixture) serves three checks:

- resume: the rerun completes, reuses the cached ExampleGen execution, and the
  Evaluator and Pusher read the model of a COMPLETE Trainer execution, never
  the half-written output of a killed one;
- failure: the failing Trainer leaves a clear error in the log and its MLMD
  execution FAILED;
- no PHI: no identifier of the synthetic data set, and not the salt, in any
  byte (raw and gunzipped) of any file the runs wrote (pipeline root, ML
  Metadata, pushed model, ROC plot) or of their stdout/stderr.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import hostile_corpus as hc
import pytest
from ml_metadata.proto import metadata_store_pb2
from phi_values import identifiers, read_blobs, scan

from components.dicom_example_gen.executor import PRIVATE_DIR_ENV
from pipelines import configs
from pipelines import pipeline as pipeline_lib
from pipelines.local_runner import PRIVATE_DIR
from pipelines.summary import (
    execution_state,
    node_executions,
    open_store,
    output_artifacts,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SALT = "pipeline-phi-salt-5d1c07"
NAME = configs.PIPELINE_NAME
ARGS = [
    "--eval-fraction", "0.4",
    "--image-size", "64",
    "--base-resolution", "32",
    "--resolution", "64",
    "--width", "4",
    "--base-steps", "30",
    "--train-steps", "6",
    "--auc-lower-bound", "0.0",
    "--beam-workers", "1",
]  # fmt: skip
TRAINER_STARTED = b"[morphhr trainer] stage 1:"
# A valid config that differs from the rerun's, so the Trainer is not served
# from the cache; the run fails on the eval split the fixture deletes.
BROKEN_CONFIG = ["--base-steps", "31"]
RUN_SECONDS = 420


class Run:
    """One ``python pipelines/local_runner.py`` process and its captured output."""

    def __init__(self, label: str, work, data_root, extra=()):
        self.label = label
        self.stdout_path = os.path.join(work, f"{label}.stdout")
        self.stderr_path = os.path.join(work, f"{label}.stderr")
        env = {**os.environ, "MORPHHR_SALT": SALT, "PYTHONUNBUFFERED": "1"}
        env.pop(PRIVATE_DIR_ENV, None)
        with (
            open(self.stdout_path, "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join("pipelines", "local_runner.py")]
                + ["--work-dir", str(work / "run"), "--data-root", str(data_root)]
                + ARGS
                + list(extra),
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, for cleanup
            )

    def output(self) -> tuple[bytes, bytes]:
        with open(self.stdout_path, "rb") as f, open(self.stderr_path, "rb") as g:
            return f.read(), g.read()

    def wait_for(self, marker: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in b"".join(self.output()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill(signal.SIGKILL)
                out, err = self.output()
                raise AssertionError(
                    f"{self.label}: {marker!r} never appeared "
                    f"(exit {self.proc.returncode}):\n{err[-3000:].decode()}"
                )
            time.sleep(0.2)

    def kill(self, sig: int) -> int:
        """Sends ``sig`` to the runner, waits, then clears its process group."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return code

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            raise


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four runs on one work dir: SIGTERM'd and SIGKILL'd during training, a
    complete rerun, and one whose Trainer finds the eval split gone."""
    from morphhr_tf.synthetic.cbis_ddsm import generate

    base = tmp_path_factory.mktemp("pipeline_run")
    data_root = base / "data" / "cbis"
    generate(str(data_root), patients=16, seed=7, rows=128, rois=False)
    secrets = identifiers(data_root)  # before any file is spoiled
    full = sorted(
        os.path.join(d, n)
        for d, _, files in os.walk(data_root)
        for n in files
        if n.endswith(".dcm")
    )
    hc.spoil(full[0], "truncated-pixels")
    hc.spoil(full[3], "not-dicom")
    shutil.copy(full[5], os.path.join(os.path.dirname(full[5]), "1-9.dcm"))

    work = base
    done = {}
    for label, sig in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
        run = Run(label, work, data_root)
        run.wait_for(TRAINER_STARTED, RUN_SECONDS)
        done[label] = (run, run.kill(sig))
    for label, extra in (("rerun", ()), ("broken", BROKEN_CONFIG)):
        if label == "broken":  # storage lost the cached eval split
            examples = work / "run" / "pipeline_root" / NAME / pipeline_lib.EXAMPLE_GEN
            (split,) = examples.glob("examples/*/Split-eval")
            shutil.rmtree(split)
        run = Run(label, work, data_root, extra)
        done[label] = (run, run.finish())
    return {
        "work": work / "run",
        "data_root": data_root,
        "secrets": secrets,
        "runs": {k: (r.output(), code) for k, (r, code) in done.items()},
    }


def _inputs(store, execution_id, key):
    events = store.get_events_by_execution_ids([execution_id])
    ids = [
        e.artifact_id
        for e in events
        if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key == key
    ]
    return store.get_artifacts_by_id(ids)


@pytest.mark.e2e
@pytest.mark.slow
def test_killed_runs_resume_from_cache_without_half_written_artifacts(runs):
    outputs = runs["runs"]
    assert outputs["sigterm"][1] == -signal.SIGTERM, outputs["sigterm"][1]
    assert outputs["sigkill"][1] == -signal.SIGKILL
    (out, err), code = outputs["rerun"]
    assert code == 0, err[-3000:].decode()
    assert b"PUSHED to" in out

    store = open_store(str(runs["work"] / "metadata.sqlite"))
    states = {
        node: [execution_state(e) for e in node_executions(store, NAME, node)]
        for node in (
            pipeline_lib.EXAMPLE_GEN,
            pipeline_lib.TRAINER,
            pipeline_lib.EVALUATOR,
            pipeline_lib.PUSHER,
        )
    }
    print(f"\nMLMD execution states after kill, kill, rerun, broken run: {states}")
    # Ingested once; every later run (the broken one too) reused it.
    assert states[pipeline_lib.EXAMPLE_GEN] == [
        "COMPLETE",
        "CACHED",
        "CACHED",
        "CACHED",
    ]
    gens = node_executions(store, NAME, pipeline_lib.EXAMPLE_GEN)
    examples = {output_artifacts(store, e.id)["examples"][0].id for e in gens}
    assert len(examples) == 1, examples

    # Trainer: killed twice (never completed), then completed, then FAILED.
    trainers = node_executions(store, NAME, pipeline_lib.TRAINER)
    assert [execution_state(e) for e in trainers][2:] == ["COMPLETE", "FAILED"]
    assert all(execution_state(e) == "RUNNING" for e in trainers[:2])
    # A killed execution registered no output: its half-written folder is
    # on disk but no artifact in MLMD points at it, so nothing can resolve it.
    good_model = output_artifacts(store, trainers[2].id)["model"][0]
    assert good_model.state == metadata_store_pb2.Artifact.LIVE
    for killed in trainers[:2]:
        assert not output_artifacts(store, killed.id), killed.id
        half_written = os.path.join(os.path.dirname(good_model.uri), str(killed.id))
        assert os.path.isdir(half_written)
        uris = [a.uri.rstrip("/") for a in store.get_artifacts()]
        assert not [u for u in uris if u.startswith(half_written)]

    # Every artifact any execution read is LIVE and came from a COMPLETE
    # execution (a CACHED one re-publishes the outputs of a COMPLETE one).
    by_id = {e.id: e for e in store.get_executions()}
    read = [
        e
        for e in store.get_events_by_execution_ids(list(by_id))
        if e.type == metadata_store_pb2.Event.INPUT
    ]
    assert read
    for event in read:
        (artifact,) = store.get_artifacts_by_id([event.artifact_id])
        assert artifact.state == metadata_store_pb2.Artifact.LIVE, artifact
        producers = [
            by_id[e.execution_id]
            for e in store.get_events_by_artifact_ids([artifact.id])
            if e.type == metadata_store_pb2.Event.OUTPUT
        ]
        assert "COMPLETE" in [execution_state(p) for p in producers], artifact.uri

    # Evaluator and Pusher ran once, on the complete Trainer's model.
    assert states[pipeline_lib.EVALUATOR] == ["COMPLETE"]
    assert states[pipeline_lib.PUSHER] == ["COMPLETE"]
    for node in (pipeline_lib.EVALUATOR, pipeline_lib.PUSHER):
        (execution,) = node_executions(store, NAME, node)
        (model,) = _inputs(store, execution.id, "model")
        assert model.id == good_model.id, (node, model.id, good_model.id)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_failing_component_logs_a_clear_error_and_is_marked_failed(runs):
    (out, err), code = runs["runs"]["broken"]
    assert code != 0
    assert b"No TFRecord files match" in err and b"Split-eval" in err, err[
        -3000:
    ].decode()
    store = open_store(str(runs["work"] / "metadata.sqlite"))
    last = node_executions(store, NAME, pipeline_lib.TRAINER)[-1]
    assert execution_state(last) == "FAILED"
    # Nothing downstream ran on the failure.
    assert len(node_executions(store, NAME, pipeline_lib.EVALUATOR)) == 1


@pytest.mark.e2e
@pytest.mark.slow
def test_no_identifier_in_any_byte_the_runs_wrote_or_printed(runs):
    work = runs["work"]
    needles = runs["secrets"] | {SALT}
    assert len(needles) >= 16 * 7
    pipeline_root = work / "pipeline_root" / NAME
    assert {"metadata.sqlite", "pipeline_root", "serving_model"} <= set(
        os.listdir(work)
    )
    blobs = read_blobs([str(work)], skip=[str(work / PRIVATE_DIR)])
    for label, ((out, err), _) in runs["runs"].items():
        blobs[f"{label} stdout"], blobs[f"{label} stderr"] = out, err
    kinds = {
        "tfrecords": "Split-train",
        "mlmd": "metadata.sqlite",
        "trainer logs": "model_run",
        "tensorboard": "events.out.tfevents",
        "saved model": "saved_model.pb",
        "evaluation": os.path.join("Evaluator", "evaluation"),
        "rejects": "rejects.csv",
        "pushed": "serving_model",
        "model card": "model_card.md",
        "gunzipped": "(gunzipped)",
    }
    missing = [k for k, part in kinds.items() if not any(part in b for b in blobs)]
    assert not missing, missing
    assert any(str(pipeline_root) in b for b in blobs)
    hits = scan(blobs, needles)
    scanned = sum(len(b) for b in blobs.values())
    print(
        f"\nPHI scan after 4 pipeline runs: {len(needles)} values x "
        f"{len(blobs)} blobs ({scanned} bytes): {len(hits)} hits"
    )
    assert not hits, hits[:20]
    # The scanner does find them where they are meant to be: the private map.
    private = read_blobs([str(work / PRIVATE_DIR)])
    assert private and scan(private, needles)
