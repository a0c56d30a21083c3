"""benchmarks/onednn_pointwise_grad.py: each configuration's processes are
counted, and bad arguments are refused with what was received.

Only configurations that do not meet the oneDNN fault run here (even batch,
16 input channels): the script's job is to show the fault on a machine, a
test must not depend on a machine having it.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "onednn_pointwise_grad.py")


def _run(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_a_configuration_without_the_fault_survives_every_run(tmp_path):
    out = tmp_path / "rows.json"
    done = _run("--batches", "2,4", "--in-channels", "16", "--runs", "2",
                "--steps", "2", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["in_channels"], r["runs"]) for r in rows] == [
        (2, 16, 2), (4, 16, 2)
    ]  # fmt: skip
    assert all(r["died"] == 0 and r["exit_statuses"] == [0, 0] for r in rows)
    assert "batch   4,  16 input channels: 0 of 2 processes died" in done.stdout


def test_a_child_that_does_not_finish_is_counted_as_died(tmp_path):
    # A million steps cannot finish in 3 s: the child is killed and counted.
    out = tmp_path / "rows.json"
    done = _run("--batches", "2", "--in-channels", "16", "--runs", "1",
                "--steps", "1000000", "--timeout", "3", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["died"] == 1 and row["exit_statuses"] == ["timeout"]


def test_bad_arguments_are_refused_with_what_was_received():
    done = _run("--batches", "2,0")
    assert done.returncode == 2
    assert "must be comma-separated positive integers. Received: 2,0" in done.stderr
    done = _run("--env", "NOEQUALS")
    assert done.returncode == 2
    assert "--env takes NAME=VALUE. Received: ['NOEQUALS']" in done.stderr
