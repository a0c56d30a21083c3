"""benchmarks/throughput.py measures what the trainer fits unless told
otherwise: its defaults are the trainer's."""

import importlib.util
import os
import sys

from morphhr_tf.models.rematerialize import DEFAULT_FRONT_CHUNKS
from morphhr_tf.training.config import TrainingConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _throughput():
    path = os.path.join(ROOT, "benchmarks", "throughput.py")
    sys.path.insert(0, os.path.dirname(path))  # its cli_types and peak_memory
    try:
        spec = importlib.util.spec_from_file_location("_throughput", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def test_the_detail_blocks_and_front_slices_default_to_the_trainers():
    throughput = _throughput()
    args = throughput.parse_args([])
    trainer = TrainingConfig()
    assert args.slice_detail_blocks is trainer.slice_detail_blocks is True
    assert args.front_chunks == trainer.front_recompute_chunks == DEFAULT_FRONT_CHUNKS
    assert not throughput.parse_args(["--no-slice-detail-blocks"]).slice_detail_blocks
