"""Runtime environment policy, applied before TensorFlow or Keras is imported.

Every entry point (the package, the TFX components, the runners, the CLIs)
imports this module first, through ``import morphhr_tf``. It fixes:

- Keras 3 with the TensorFlow backend (``KERAS_BACKEND=tensorflow``). The
  package never uses ``tf.keras``: importing ``tensorflow_transform`` flips
  ``tf.keras`` to Keras 2, while ``import keras`` stays Keras 3.
- Quiet TensorFlow / absl logging unless ``MORPHHR_VERBOSE=1`` is set,
  including the C++ start-up lines TensorFlow prints while it loads, which
  no environment variable silences (:func:`hidden_startup_lines`).
- Apache Beam options that run offline: Beam >= 2.68's ``DirectRunner`` may
  hand a pipeline to the Prism runner, which downloads a binary on first use.
  :func:`beam_pipeline_args` names the in-process ``FnApiRunner`` instead.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

VERBOSE_ENV = "MORPHHR_VERBOSE"

_TRUTHY = {"1", "true", "yes", "on"}


#: Set to 1 to import only the model side (`layers`, `morph`, `models`) on a
#: Keras backend other than TensorFlow (JAX, PyTorch): the GPU check and the
#: JAX test job use it. The pipeline, data and serving still need TensorFlow.
MODEL_SIDE_ENV = "MORPHHR_MODEL_SIDE_ONLY"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUTHY


def model_side_only() -> bool:
    """Whether the process uses only the backend-agnostic model side."""
    return _env_flag(MODEL_SIDE_ENV)


def is_verbose() -> bool:
    """Whether the user asked for TensorFlow's and absl's full logging."""
    return _env_flag(VERBOSE_ENV)


def configure(verbose: bool | None = None) -> None:
    """Applies the runtime policy to the process environment.

    Safe to call more than once. Environment variables only take effect for
    TensorFlow if they are set before TensorFlow is first imported, which is
    why ``morphhr_tf/__init__.py`` calls this before anything else.

    Args:
        verbose: ``True`` keeps TensorFlow's INFO logs; ``None`` reads
            ``MORPHHR_VERBOSE`` from the environment.

    Raises:
        ValueError: if ``KERAS_BACKEND`` is already set to another backend.
    """
    backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow" and not model_side_only():
        raise ValueError(
            "morphhr_tf's pipeline, data and serving run Keras 3 on the "
            f"TensorFlow backend only. Received: KERAS_BACKEND={backend!r}. "
            "Unset it or set it to 'tensorflow'; to use only the "
            "backend-agnostic model side (layers, morph, models) on JAX or "
            f"PyTorch, also set {MODEL_SIDE_ENV}=1."
        )
    if verbose is None:
        verbose = is_verbose()
    _library_noise(quiet=not verbose)
    _quiet_tensorflow_import(quiet=not verbose)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Keras' own "Epoch 1/3" progress still shows; only library chatter
        # at INFO level is hidden.
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.WARNING)
        except ImportError:  # absl is in the lock; tolerate partial installs
            pass


#: Messages of the libraries under the pipeline that say nothing to a user of
#: it, hidden unless ``MORPHHR_VERBOSE=1``: TFX's resolver notes on every run,
#: TFMA's deprecation notices (through TensorFlow's Python logger, which is
#: set to ERROR) and its divide-by-zero RuntimeWarning on empty thresholds.
#: Beam's SDK worker processes (``multi_processing`` mode) each warn that they
#: have no staging directory to load a pickled main session from; the local
#: runners never stage one, and the runner relays the warning through its
#: job service logger.
_QUIET_MESSAGES = (
    "ArtifactQuery.property_predicate is not supported",
    "No semi_persistent_directory found",
)
_QUIET_LOGGERS = (
    "absl",
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.worker.sdk_worker_main",
)
_TFMA_WARNINGS = ("ignore", r".*", RuntimeWarning, r"tensorflow_model_analysis\..*")


class _DropMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _QUIET_MESSAGES)


_DROP = _DropMessages()


def _library_noise(quiet: bool) -> None:
    """Hides (``quiet``) or shows the messages of :data:`_QUIET_MESSAGES`,
    TensorFlow's Python warnings and TFMA's RuntimeWarnings.

    TensorFlow's C++ start-up lines ("All log messages before
    absl::InitializeLog()", oneDNN, cuInit) are printed while TensorFlow
    loads and ignore ``TF_CPP_MIN_LOG_LEVEL`` in TF 2.19+
    (tensorflow/tensorflow#100442): :func:`_quiet_tensorflow_import` handles
    them.
    """
    import warnings

    action, message, category, module = _TFMA_WARNINGS
    tf_logger = logging.getLogger("tensorflow")
    quiet_loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    if quiet:
        tf_logger.setLevel(logging.ERROR)
        for logger in quiet_loggers:
            if _DROP not in logger.filters:
                logger.addFilter(_DROP)
        warnings.filterwarnings(action, message, category, module)
        return
    tf_logger.setLevel(logging.NOTSET)
    for logger in quiet_loggers:
        logger.removeFilter(_DROP)
    warnings.filters[:] = [
        f
        for f in warnings.filters
        if not (
            f[0] == action
            and f[2] is category
            and getattr(f[3], "pattern", f[3]) == module
        )
    ]


#: The lines TensorFlow 2.21's C++ side writes to file descriptor 2 while it
#: loads (twice: once per shared library that carries its own absl) and when
#: it first lists devices, before absl's logger is initialised, so whatever
#: ``TF_CPP_MIN_LOG_LEVEL`` says (tensorflow/tensorflow#100442). Only these
#: are dropped; cuInit's failure only in its no-driver form (CUDA error 303,
#: the CPU wheel on a host without a GPU driver), so a GPU host's real CUDA
#: error still shows.
_ABSL_PREFIX = r"[IWE]\d{4} [\d:.]+ +\d+ "
_STARTUP_LINES = tuple(
    re.compile(pattern)
    for pattern in (
        r"WARNING: All log messages before absl::InitializeLog\(\) is called "
        r"are written to STDERR$",
        _ABSL_PREFIX + r"port\.cc:\d+\] oneDNN custom operations are on\. ",
        _ABSL_PREFIX + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on "
        r"your machine, GPU will not be used\.$",
        _ABSL_PREFIX + r"cuda_platform\.cc:\d+\] failed call to cuInit: .*"
        r"UNKNOWN ERROR \(303\)$",
        # Shown only when TF_CPP_MIN_LOG_LEVEL=0 is set by hand.
        _ABSL_PREFIX + r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is "
        r"optimized to use available CPU instructions",
        r"To enable the following instructions: .*, in other operations, "
        r"rebuild TensorFlow with the appropriate compiler flags\.$",
    )
)


def is_startup_line(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's known C++ start-up lines."""
    line = line.rstrip("\r\n")
    return any(pattern.match(line) for pattern in _STARTUP_LINES)


@contextlib.contextmanager
def hidden_startup_lines() -> Iterator[None]:
    """Runs a block with file descriptor 2 captured, then writes back all of
    it but TensorFlow's known start-up lines (:func:`is_startup_line`).

    C++ code writes to the descriptor, not to ``sys.stderr``, so only a
    descriptor-level redirect reaches it. Every other captured line (an import
    error's traceback, an unknown warning) goes back to descriptor 2, in
    order, when the block ends, whether or not it raised; the descriptor is
    always restored. Where descriptor 2 cannot be duplicated (closed, as in
    some daemons) the block runs unchanged.

    Example:

    >>> with hidden_startup_lines():
    ...     import tensorflow  # doctest: +SKIP
    """
    _flush_stderr()  # Python's buffered writes go out first, in order
    capture, saved = None, None
    try:
        capture = tempfile.TemporaryFile()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
    except OSError:
        if saved is not None:
            os.close(saved)
        if capture is not None:
            capture.close()
        capture, saved = None, None
    if saved is None:
        yield
        return
    try:
        yield
    finally:
        try:
            _flush_stderr()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            with capture:
                capture.seek(0)
                captured = capture.read()
            kept = [
                line
                for line in captured.splitlines(keepends=True)
                if not is_startup_line(line.decode("utf-8", "replace"))
            ]
            _write_fd2(b"".join(kept))


def _flush_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):  # closed or detached: nothing buffered to keep
        pass


def _write_fd2(data: bytes) -> None:
    while data:
        try:
            written = os.write(2, data)
        except OSError:
            return
        data = data[written:]


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` under :func:`hidden_startup_lines`.

    Whichever import loads TensorFlow first (``keras``, ``tfx``, a module of
    this package, the unpickling in a Beam worker) passes through here. Inside
    the same block TensorFlow lists its physical devices, which is where the
    cuInit line comes from; listing devices does not initialise the eager
    runtime, so logical devices and distribution strategies can still be set
    up afterwards. The finder removes itself once TensorFlow is loaded.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        # Only an import runs exec_module: a look-up (importlib.util.find_spec,
        # as libraries do to see whether TensorFlow is there) leaves the finder
        # in place for the import that follows.
        def quiet_exec_module(module):
            try:
                with hidden_startup_lines():
                    exec_module(module)
                    _list_devices(module)
            finally:
                del loader.exec_module
                _remove_finder()

        try:
            loader.exec_module = quiet_exec_module
        except AttributeError:  # a loader with __slots__: load it as it is
            pass
        return spec


def _list_devices(tensorflow) -> None:
    try:
        tensorflow.config.list_physical_devices()
    except Exception:  # raises again, not hidden, at the first real use
        pass


def _remove_finder() -> None:
    sys.meta_path[:] = [
        f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)
    ]


def _quiet_tensorflow_import(quiet: bool) -> None:
    """Hides (``quiet``) TensorFlow's C++ start-up lines in this process, or
    stops hiding them. Nothing to do once TensorFlow is loaded."""
    _remove_finder()
    if quiet and "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())


#: FnApiRunner's workers run this interpreter (``sys.executable``, in process
#: or in subprocesses), so nothing needs staging for them. TFX's Beam executors
#: stage TFX anyway unless the options say how workers get their dependencies
#: (``tfx.utils.dependency_utils.make_beam_dependency_flags``): each Beam
#: component of each run builds an sdist of the installed TFX, about 2 s and
#: 52 MB in a temporary folder that is never removed. This option names a
#: worker image, which FnApiRunner never reads, so the executors skip that.
LOCAL_WORKER_DEPENDENCIES = "--sdk_container_image=this-interpreter"


#: How :func:`beam_pipeline_args` runs more than one local Beam worker:
#: ``"processes"``, one OS process each (Beam's ``multi_processing`` mode:
#: each worker starts an interpreter and imports Beam, seconds of CPU, then
#: scales with the cores), or ``"threads"``, threads of this process
#: (``multi_threading``: no start-up; they share the interpreter's lock, so
#: they scale only where the work releases it, as zlib and numpy's large
#: array passes do).
WORKER_MODES = ("processes", "threads")
_RUNNING_MODES = {"processes": "multi_processing", "threads": "multi_threading"}


def check_worker_mode(mode: str, name: str = "worker_mode") -> None:
    """Raises ``ValueError`` naming ``name`` unless ``mode`` is one of
    :data:`WORKER_MODES`."""
    if mode not in WORKER_MODES:
        raise ValueError(f"{name} must be one of {WORKER_MODES}. Received: {mode!r}")


def beam_pipeline_args(
    num_workers: int = 1, worker_mode: str = "processes"
) -> list[str]:
    """Beam options that run on this machine with no network.

    ``FnApiRunner`` is the engine ``DirectRunner`` uses for batch pipelines;
    naming it directly skips the Prism hand-off (and its binary download).
    :data:`LOCAL_WORKER_DEPENDENCIES` stops TFX from packaging itself for
    workers that already run this interpreter.

    Args:
        num_workers: local workers. ``1`` runs in process.
        worker_mode: how more than one worker runs, one of
            :data:`WORKER_MODES` (ignored for one worker).

    Returns:
        A list of ``--flag=value`` strings for ``PipelineOptions`` or a TFX
        pipeline's ``beam_pipeline_args``.

    Raises:
        ValueError: if ``num_workers`` is not a positive integer or
            ``worker_mode`` not one of :data:`WORKER_MODES`.
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(
            f"num_workers must be a positive integer. Received: {num_workers!r}"
        )
    check_worker_mode(worker_mode)
    mode = "in_memory" if num_workers == 1 else _RUNNING_MODES[worker_mode]
    return [
        "--runner=FnApiRunner",
        f"--direct_running_mode={mode}",
        f"--direct_num_workers={num_workers}",
        LOCAL_WORKER_DEPENDENCIES,
    ]


def beam_workers_of(args: list[str]) -> tuple[int, str]:
    """``(num_workers, worker_mode)`` of Beam options: the inverse of
    :func:`beam_pipeline_args`, with ``"in_process"`` for the ``in_memory``
    mode (or none given)."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    direct = PipelineOptions(args).view_as(DirectOptions)
    modes = {running: mode for mode, running in _RUNNING_MODES.items()}
    return (
        int(direct.direct_num_workers or 1),
        modes.get(direct.direct_running_mode, "in_process"),
    )
