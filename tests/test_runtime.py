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


@pytest.mark.parametrize(
    "workers, mode, running",
    [
        (1, "processes", "in_memory"),
        (1, "threads", "in_memory"),
        (2, "processes", "multi_processing"),
        (3, "threads", "multi_threading"),
    ],
)
def test_beam_args_run_more_workers_as_processes_or_threads(workers, mode, running):
    args = runtime.beam_pipeline_args(workers, mode)
    assert f"--direct_running_mode={running}" in args
    assert f"--direct_num_workers={workers}" in args


@pytest.mark.parametrize("bad", ["thread", "multi_threading", "", None])
def test_beam_args_reject_unknown_worker_modes(bad):
    with pytest.raises(
        ValueError, match=r"worker_mode must be one of \('processes', 'threads'\)"
    ):
        runtime.beam_pipeline_args(2, bad)


@pytest.mark.parametrize("workers", [1, 2])
def test_tfx_beam_executors_package_nothing_for_the_local_workers(monkeypatch, workers):
    # Each packaging leaves 52 MB in a temporary folder nobody removes.
    from tfx.utils import dependency_utils

    def refuse():
        raise AssertionError("TFX built an ephemeral package of itself")

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", refuse)
    args = runtime.beam_pipeline_args(workers)
    assert dependency_utils.make_beam_dependency_flags(args) == args


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


# TensorFlow 2.21's C++ start-up lines, as this machine prints them.
STARTUP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR",
    "I0000 00:00:1796025538.858419   24316 port.cc:153] oneDNN custom operations "
    "are on. You may see slightly different numerical results due to "
    "floating-point round-off errors from different computation orders. To turn "
    "them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796025538.858743   24316 cudart_stub.cc:31] Could not find cuda "
    "drivers on your machine, GPU will not be used.",
    "E0000 00:00:1796025550.665994   24316 cuda_platform.cc:52] failed call to "
    "cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796025613.326231   26232 cpu_feature_guard.cc:227] This "
    "TensorFlow binary is optimized to use available CPU instructions in "
    "performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 "
    "FMA, in other operations, rebuild TensorFlow with the appropriate compiler "
    "flags.",
]


@pytest.mark.parametrize("line", STARTUP_LINES)
def test_known_startup_lines_are_recognised(line):
    assert runtime.is_startup_line(line + "\n")


@pytest.mark.parametrize(
    "line",
    [
        "ImportError: libcudart.so.12: cannot open shared object file",
        "W0000 00:00:1.0   1 some_kernel.cc:10] a real warning",
        # A GPU host's real CUDA problem is not the no-driver case.
        "E0000 00:00:1796025550.665994   24316 cuda_platform.cc:52] failed call to "
        "cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected",
        "Traceback (most recent call last):",
    ],
)
def test_other_lines_are_not_startup_lines(line):
    assert not runtime.is_startup_line(line)


def test_guard_drops_startup_lines_and_writes_back_the_rest(capfd):
    noise = "".join(line + "\n" for line in STARTUP_LINES).encode()
    with runtime.hidden_startup_lines():
        os.write(2, noise[:100])  # a line may come in several writes
        os.write(2, noise[100:] + b"keep me\n")
        os.write(2, b"and me, unterminated")
    os.write(2, b"\nafter\n")
    assert capfd.readouterr().err == "keep me\nand me, unterminated\nafter\n"


def test_guard_restores_fd2_and_keeps_output_when_the_block_raises(capfd):
    before = os.fstat(2)
    with pytest.raises(ZeroDivisionError):
        with runtime.hidden_startup_lines():
            os.write(2, (STARTUP_LINES[0] + "\nwritten before the error\n").encode())
            1 / 0  # noqa: B018
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "written before the error\nafter\n"


def _stderr_of(
    code: str, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in (env or os.environ).items() if k != runtime.VERBOSE_ENV}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kwargs,
    )


_IMPORT_THEN_WRITE = (
    "import os, sys\n"
    "import morphhr_tf\n"
    "import tensorflow as tf\n"
    "tf.constant(1.0) + 1\n"  # the first op: devices are initialised by now
    "os.write(2, b'fd 2 is back\\n')\n"
)


@pytest.mark.slow
def test_importing_tensorflow_after_the_package_prints_no_startup_lines():
    out = _stderr_of(_IMPORT_THEN_WRITE)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert not [line for line in lines if runtime.is_startup_line(line)], lines
    assert lines == ["fd 2 is back"], lines


@pytest.mark.slow
def test_verbose_shows_the_startup_lines():
    env = dict(os.environ, **{runtime.VERBOSE_ENV: "1"})
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_THEN_WRITE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert [line for line in lines if runtime.is_startup_line(line)], lines
    assert lines[-1] == "fd 2 is back", lines


def _fake_tensorflow(root, body: str) -> dict:
    """An environment whose ``tensorflow`` is a stub package at ``root``."""
    package = root / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(body)
    pythonpath = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=pythonpath)


_FAKE_BODY = (
    "import os, types\n"
    "os.write(2, ({startup!r} + '\\na line of its own\\n').encode())\n"
    "def _list():\n"
    "    os.write(2, ({cuinit!r} + '\\n').encode())\n"
    "    return []\n"
    "config = types.SimpleNamespace(list_physical_devices=_list)\n"
)


def test_other_lines_of_the_guarded_import_reach_stderr(tmp_path):
    body = _FAKE_BODY.format(startup=STARTUP_LINES[1], cuinit=STARTUP_LINES[3])
    env = _fake_tensorflow(tmp_path, body)
    code = (
        "import importlib.util, os, sys\n"
        "import morphhr_tf\n"
        "from morphhr_tf import runtime\n"
        "assert importlib.util.find_spec('tensorflow')\n"  # a look-up, no import
        "import tensorflow\n"
        "assert not [f for f in sys.meta_path\n"
        "            if isinstance(f, runtime._QuietTensorFlowImport)]\n"
        "os.write(2, b'fd 2 is back\\n')\n"
    )
    out = _stderr_of(code, env=env, cwd=tmp_path.parent)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["a line of its own", "fd 2 is back"]


def test_a_failing_import_shows_its_error_and_restores_fd2(tmp_path):
    body = _FAKE_BODY.format(startup=STARTUP_LINES[1], cuinit=STARTUP_LINES[3])
    env = _fake_tensorflow(tmp_path, body + "raise ImportError('broken build')\n")
    code = (
        "import os, morphhr_tf\n"
        "try:\n"
        "    import tensorflow\n"
        "except ImportError as e:\n"
        "    os.write(2, f'caught {e}\\n'.encode())\n"
        "os.write(2, b'fd 2 is back\\n')\n"
    )
    out = _stderr_of(code, env=env, cwd=tmp_path.parent)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "a line of its own",
        "caught broken build",
        "fd 2 is back",
    ]


def test_an_uncaught_import_error_shows_its_traceback(tmp_path):
    body = _FAKE_BODY.format(startup=STARTUP_LINES[1], cuinit=STARTUP_LINES[3])
    env = _fake_tensorflow(tmp_path, body + "raise ImportError('broken build')\n")
    out = _stderr_of("import morphhr_tf, tensorflow\n", env=env, cwd=tmp_path.parent)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0] == "a line of its own", lines
    assert "Traceback (most recent call last):" in lines, lines
    assert lines[-1] == "ImportError: broken build", lines
