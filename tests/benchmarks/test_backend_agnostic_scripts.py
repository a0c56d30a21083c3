"""The GPU check, the fine-detail sweep and the CPU throughput benchmark run
end to end at tiny sizes.

The first two are written for a machine without TensorFlow (Keras on JAX);
here they run on the TensorFlow backend with ``--dry-run``, the same code
path.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600, check=True,
    )  # fmt: skip


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_configuration(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = _run(["benchmarks/gpu_check.py", "--dry-run", "--out", str(out)], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["model"], r["size"], r["batch"]) for r in rows) == sorted(
        (m, s, b)
        for m in ("resnet18", "morphhr", "morphhr_plain")
        for s in (32, 64)
        for b in (2, 4)
    )
    for row in rows:
        assert "error" not in row, row
        assert row["img_per_s"] > 0 and row["peak_mb"] > 0
    assert "morphhr / ResNet18 throughput" in done.stdout
    assert "morphhr_plain / ResNet18 throughput" in done.stdout


@pytest.mark.slow
def test_fine_detail_sweep_and_report(tmp_path):
    out = tmp_path / "sweep.json"
    rows = "resnet18_S,morphhr_detail_4S,detector_4S"
    _run(
        ["benchmarks/fine_detail_sweep.py", "--dry-run", "--rows", rows,
         "--lrs", "1e-3/3e-3", "--out", str(out)],
        tmp_path,
    )  # fmt: skip
    result = json.loads(out.read_text())
    runs = result["rows"]
    assert [(r["row"], r["lr"]) for r in runs] == [
        (name, lr) for name in rows.split(",") for lr in (1e-3, 3e-3)
    ]
    for run in runs:
        assert "error" not in run, run
        assert len(run["test"]) == len(result["test_labels"])
    morph = next(r for r in runs if r["row"] == "morphhr_detail_4S")
    small = next(r for r in runs if r["row"] == "resnet18_S")
    assert morph["size"] == 4 * small["size"]
    table = _run(["benchmarks/fine_detail_report.py", str(out)], tmp_path).stdout
    assert table.count("\n| ") == 3 + 1  # header + one line per row
    assert "morphhr_detail_4S" in table


@pytest.mark.slow
def test_throughput_benchmark_measures_idle_and_three_models(tmp_path):
    # benchmarks/throughput.py at tiny sizes: every row measured (no failed
    # row), and the ratios it exists for printed, memory above idle included.
    done = _run(
        ["benchmarks/throughput.py", "--sizes", "64", "--base-size", "32",
         "--batch", "2", "--steps", "1", "--width", "4", "--input-batches", "2"],
        tmp_path,
    )  # fmt: skip
    out = done.stdout
    assert "failed" not in out, out
    for model in ("resnet18", "morphhr", "morphhr_plain"):
        assert any(line.split()[:2] == [model, "64"] for line in out.splitlines()), out
    assert "idle process: peak RSS" in out
    assert "above idle x" in out
    assert "the recomputing view" in out


@pytest.mark.parametrize("value", ["0", "two"])
@pytest.mark.parametrize("script", ["gpu_check.py", "throughput.py"])
def test_a_front_chunk_count_below_one_is_refused_with_the_value(
    script, value, tmp_path
):
    out = ["--out", str(tmp_path / "o.json")] if script == "gpu_check.py" else []
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *out, "--front-chunks", value],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "argument --front-chunks: must be a positive integer" in done.stderr
    assert f"Received: {value}" in done.stderr


@pytest.mark.parametrize("threads", ["0", "1", "3"])
def test_throughput_workers_run_with_the_inter_op_threads_asked_for(threads):
    # --inter-op-threads reaches the measured process before TensorFlow
    # starts its pools (0: TensorFlow's choice).
    done = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--worker", "--model", "idle",
         "--inter-op-threads", threads],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    assert json.loads(line[len("RESULT ") :])["inter_op_threads"] == int(threads)


@pytest.mark.parametrize("value", ["-1", "one"])
def test_a_negative_inter_op_thread_count_is_refused_with_the_value(value):
    done = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--inter-op-threads", value],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "argument --inter-op-threads: must be an integer >= 0" in done.stderr
    assert f"Received: {value}" in done.stderr
