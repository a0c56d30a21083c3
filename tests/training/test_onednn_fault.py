"""The trainer refuses, with a clear error, a run that TensorFlow 2.21's
oneDNN kernel gradient of a 1x1 strided convolution would corrupt (fewer
than 16 input channels, odd batch, AVX-512): the process would otherwise die
steps later with a corrupted heap (benchmarks/onednn_pointwise_grad.py)."""

import types

import keras
import pytest

from morphhr_tf.models import resnet18
from morphhr_tf.training import onednn_fault, trainer
from morphhr_tf.training.onednn_fault import (
    check_pointwise_gradient_fault,
    fault_applies,
    faulty_pointwise_convs,
)

FAULTY = dict(backend="tensorflow", tensorflow_version="2.21", onednn=True, avx512=True)


def test_the_shortcuts_below_16_input_channels_are_found():
    assert faulty_pointwise_convs(resnet18((32, 32, 1), width=4)) == [
        ("stack1_block0_0_conv", 4),
        ("stack2_block0_0_conv", 8),
    ]
    assert faulty_pointwise_convs(resnet18((32, 32, 1), width=8)) == [
        ("stack1_block0_0_conv", 8)
    ]
    assert faulty_pointwise_convs(resnet18((32, 32, 1), width=16)) == []


def test_nested_models_are_searched_and_frozen_layers_skipped():
    base = resnet18((32, 32, 1), width=8)
    inputs = keras.Input((32, 32, 1))
    outer = keras.Model(inputs, base(inputs), name="outer")
    assert faulty_pointwise_convs(outer) == [("stack1_block0_0_conv", 8)]
    base.get_layer("stack1_block0_0_conv").trainable = False
    assert faulty_pointwise_convs(outer) == []


@pytest.mark.parametrize(
    "change",
    [
        dict(backend="jax"),
        dict(tensorflow_version="2.20"),
        dict(onednn=False),
        dict(avx512=False),
    ],
)
def test_the_fault_applies_only_where_it_was_measured(change):
    assert fault_applies(**FAULTY)
    assert not fault_applies(**dict(FAULTY, **change))


def test_onednn_off_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not onednn_fault._onednn_on()
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    assert onednn_fault._onednn_on()


def test_an_isa_cap_below_avx512_is_read_from_the_environment(monkeypatch):
    monkeypatch.setattr(onednn_fault, "_cpu_has_avx512", lambda: True)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert not onednn_fault._avx512()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert onednn_fault._avx512()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert not onednn_fault._avx512()


def test_an_odd_batch_per_replica_is_refused_with_the_layer_and_the_remedies():
    model = resnet18((32, 32, 1), width=8)
    with pytest.raises(ValueError) as refused:
        check_pointwise_gradient_fault(model, 5, **FAULTY)
    message = str(refused.value)
    for part in ("a batch of 5 per replica", "'stack1_block0_0_conv' with 8 input",
                 "batch_size=5 over 1 replica", "an even batch per replica",
                 "a width of at least 16", "TF_ENABLE_ONEDNN_OPTS=0"):  # fmt: skip
        assert part in message
    with pytest.raises(ValueError, match="a batch of 3 per replica"):
        check_pointwise_gradient_fault(model, 6, replicas=2, **FAULTY)
    with pytest.raises(ValueError, match="a batch of 3 per replica"):
        check_pointwise_gradient_fault(model, 5, replicas=2, **FAULTY)  # 2 and 3


def test_even_batches_wide_models_and_other_machines_pass():
    narrow, wide = resnet18((32, 32, 1), width=8), resnet18((32, 32, 1), width=16)
    check_pointwise_gradient_fault(narrow, 4, **FAULTY)
    check_pointwise_gradient_fault(narrow, 8, replicas=2, **FAULTY)
    check_pointwise_gradient_fault(wide, 5, **FAULTY)
    check_pointwise_gradient_fault(narrow, 5, **dict(FAULTY, avx512=False))


def test_the_trainer_refuses_before_it_fits(tiny_splits, tmp_path, monkeypatch):
    monkeypatch.setattr(onednn_fault, "_tensorflow_version", lambda: "2.21")
    monkeypatch.setattr(onednn_fault, "_avx512", lambda: True)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    config = dict(base_resolution=32, resolution=64, epochs=1, model="resnet18",
                  width=8, batch_size=3)  # fmt: skip
    args = types.SimpleNamespace(
        custom_config=config, train_steps=3, base_model=None,
        train_files=[tiny_splits["train"]], eval_files=[tiny_splits["eval"]],
        serving_model_dir=str(tmp_path / "model" / "Format-Serving"),
        model_run_dir=str(tmp_path / "model_run"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="would corrupt memory"):
        trainer.run_fn(args)
    assert not (tmp_path / "model").exists()
