"""Starts the JAX test job: `tests/jax_backend/` in a process on the JAX
backend (the model side only, as the GPU check runs it), and fails with that
run's output if any of its tests fails."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_model_side_passes_its_tests_on_jax():
    env = dict(os.environ, KERAS_BACKEND="jax", MORPHHR_MODEL_SIDE_ONLY="1")
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         os.path.join("tests", "jax_backend")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    tail = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and "skipped" not in run.stdout, tail
