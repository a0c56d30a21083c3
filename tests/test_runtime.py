"""The runtime policy: Keras 3 on TensorFlow, quiet logs, the stack imports."""

import os
import subprocess
import sys

import pytest

import morphhr_tf
from morphhr_tf import runtime


def test_stack_imports_in_the_installed_environment():
    import keras
    import ml_metadata
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    import tfx.v1 as tfx

    assert keras.backend.backend() == "tensorflow"
    assert keras.__version__.startswith("3.")
    assert tf.__version__ == "2.21.0"
    assert tfx.dsl.Pipeline is not None
    assert tfma.__version__ == "0.52.0"
    assert ml_metadata.__version__ == "1.17.1"
    assert morphhr_tf.__version__


def test_configure_sets_backend_and_quiet_logs(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv(runtime.VERBOSE_ENV, raising=False)
    runtime.configure()
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_verbose_env_turns_logs_back_on(monkeypatch):
    monkeypatch.setenv(runtime.VERBOSE_ENV, "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    runtime.configure()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_other_keras_backend_is_refused_with_the_value_received(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(ValueError, match="KERAS_BACKEND='jax'"):
        runtime.configure()


def test_importing_the_package_first_selects_keras3_tensorflow():
    code = (
        "import os; os.environ.pop('KERAS_BACKEND', None)\n"
        "import morphhr_tf, keras\n"
        "print(keras.backend.backend(), keras.__version__.split('.')[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.split() == ["tensorflow", "3"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_beam_args_reject_bad_worker_counts(bad):
    with pytest.raises(ValueError, match="num_workers"):
        runtime.beam_pipeline_args(bad)


def test_beam_args_name_the_offline_runner():
    assert "--runner=FnApiRunner" in runtime.beam_pipeline_args(1)
    assert "--direct_running_mode=multi_processing" in runtime.beam_pipeline_args(2)


def test_library_noise_is_hidden_unless_verbose(monkeypatch):
    import logging
    import warnings

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    absl_logger, keep = logging.getLogger("absl"), Keep()
    absl_logger.addHandler(keep)
    noisy = "ArtifactQuery.property_predicate is not supported."

    def tfma_warning():
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn_explicit(
                "invalid value encountered in divide",
                RuntimeWarning,
                "confusion_matrix_metrics.py",
                576,
                module="tensorflow_model_analysis.metrics.confusion_matrix_metrics",
            )
        return len(caught)

    try:
        monkeypatch.delenv(runtime.VERBOSE_ENV, raising=False)
        runtime.configure()
        absl_logger.warning(noisy)
        absl_logger.warning("a real problem")
        assert keep.messages == ["a real problem"]
        assert logging.getLogger("tensorflow").level == logging.ERROR
        with warnings.catch_warnings():
            runtime.configure()  # filters are installed inside this block
            assert tfma_warning() == 0

        monkeypatch.setenv(runtime.VERBOSE_ENV, "1")
        runtime.configure()
        absl_logger.warning(noisy)
        assert keep.messages[-1] == noisy
        assert logging.getLogger("tensorflow").level == logging.NOTSET
        assert tfma_warning() == 1
    finally:
        absl_logger.removeHandler(keep)
        monkeypatch.delenv(runtime.VERBOSE_ENV, raising=False)
        runtime.configure()
