"""benchmarks/peak_memory.py: one peak-memory reader for the benchmark
scripts, on the TensorFlow and the JAX backend (here on the CPU: peak RSS)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Reads the peak and the current RSS, touches enough memory to pass the peak
# (the imports may have peaked far above the current RSS: JAX's did, at 1.4 GB
# against 0.4 GB), reads the peak again.
_PROBE = """
import json, os, sys
sys.path.insert(0, "benchmarks")
import keras, numpy as np
from peak_memory import peak_memory_mb
before, _ = peak_memory_mb()
with open("/proc/self/statm") as f:
    now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
size_mb = max(1024, int(before - now) + 512)
block = np.ones(size_mb * 2**20, dtype=np.uint8)
after, what = peak_memory_mb()
print(json.dumps({"before": before, "now": now, "after": after, "what": what,
                  "size_mb": size_mb,
                  "backend": keras.backend.backend(), "touched": int(block[-1]),
                  "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_peak_rss_counts_a_touched_allocation_in_megabytes(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300, check=True,
    )  # fmt: skip
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["backend"] == backend
    assert got["what"] == "peak RSS"
    # The new peak is the RSS before the allocation plus its size in MB (2**20
    # bytes each), give or take the pages the interpreter touched meanwhile.
    assert got["after"] > got["before"], got
    assert abs(got["after"] - (got["now"] + got["size_mb"])) < 32, got
    # On the JAX backend the reader does not import TensorFlow.
    assert got["tensorflow"] == (backend == "tensorflow")
