import pytest

from morphhr_tf.cpu import cpu_flags
from morphhr_tf.training.precision import cpu_supports_bfloat16, select_precision


@pytest.mark.parametrize(
    "gpus, flags, expected",
    [
        ([(8, 0)], frozenset(), "mixed_float16"),
        ([(7, 0), (9, 0)], frozenset(), "mixed_float16"),
        ([(6, 1)], frozenset({"avx512_bf16"}), "float32"),
        ([], frozenset({"avx512_bf16", "avx512f"}), "mixed_bfloat16"),
        ([], frozenset({"amx_bf16"}), "mixed_bfloat16"),
        ([], frozenset({"avx2"}), "float32"),
    ],
)
def test_auto_precision(gpus, flags, expected):
    assert select_precision("auto", gpu_capabilities=gpus, flags=flags) == expected


@pytest.mark.parametrize("name", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_precision_is_kept(name):
    assert select_precision(name, gpu_capabilities=[], flags=frozenset()) == name


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="bfloat8"):
        select_precision("bfloat8")


def test_auto_on_this_machine_follows_its_cpu_flags():
    expected = "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"
    assert select_precision("auto", gpu_capabilities=[]) == expected
    assert cpu_supports_bfloat16() == bool(
        {"avx512_bf16", "amx_bf16"} & set(cpu_flags())
    )


def test_cpu_flags_of_a_missing_file_is_empty(tmp_path):
    assert cpu_flags(str(tmp_path / "nope")) == frozenset()
    path = tmp_path / "cpuinfo"
    path.write_text("processor : 0\nflags : fpu avx512_bf16 sse\n")
    assert cpu_flags(str(path)) == frozenset({"fpu", "avx512_bf16", "sse"})
