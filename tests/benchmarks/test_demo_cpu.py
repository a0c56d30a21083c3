"""benchmarks/demo_cpu.py: its variants parse to the trainer options they set
(no training here)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(ROOT, "benchmarks"))

import demo_cpu  # noqa: E402


def test_variants_join_with_plus():
    assert demo_cpu.parse_variant("baseline") == {}
    assert demo_cpu.parse_variant("xla=0+branch=none+chunks=2+remat=1") == {
        "xla": False,
        "branch": "none",
        "chunks": 2,
        "remat": True,
    }
    assert demo_cpu.parse_variant("spe=8+jit+threads=1,2") == {
        "spe": 8,
        "jit": True,
        "threads": (1, 2),
    }


@pytest.mark.parametrize("bad", ["xla=2", "branch=wide", "chunks=0", "spe=x", "fast"])
def test_an_unknown_part_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=f"Received: {bad!r}"):
        demo_cpu.parse_variant(f"baseline+{bad}")
