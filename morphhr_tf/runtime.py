"""Runtime environment policy, applied before TensorFlow or Keras is imported.

Every entry point (the package, the TFX components, the runners, the CLIs)
imports this module first, through ``import morphhr_tf``. It fixes:

- Keras 3 with the TensorFlow backend (``KERAS_BACKEND=tensorflow``). The
  package never uses ``tf.keras``: importing ``tensorflow_transform`` flips
  ``tf.keras`` to Keras 2, while ``import keras`` stays Keras 3.
- Quiet TensorFlow / absl logging unless ``MORPHHR_VERBOSE=1`` is set.
- Apache Beam options that run offline: Beam >= 2.68's ``DirectRunner`` may
  hand a pipeline to the Prism runner, which downloads a binary on first use.
  :func:`beam_pipeline_args` names the in-process ``FnApiRunner`` instead.
"""

from __future__ import annotations

import logging
import os

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
_QUIET_MESSAGES = ("ArtifactQuery.property_predicate is not supported",)
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
    (tensorflow/tensorflow#100442): they are not filtered here.
    """
    import warnings

    action, message, category, module = _TFMA_WARNINGS
    tf_logger, absl_logger = logging.getLogger("tensorflow"), logging.getLogger("absl")
    if quiet:
        tf_logger.setLevel(logging.ERROR)
        if _DROP not in absl_logger.filters:
            absl_logger.addFilter(_DROP)
        warnings.filterwarnings(action, message, category, module)
        return
    tf_logger.setLevel(logging.NOTSET)
    absl_logger.removeFilter(_DROP)
    warnings.filters[:] = [
        f
        for f in warnings.filters
        if not (
            f[0] == action
            and f[2] is category
            and getattr(f[3], "pattern", f[3]) == module
        )
    ]


def beam_pipeline_args(num_workers: int = 1) -> list[str]:
    """Beam options that run on this machine with no network.

    ``FnApiRunner`` is the engine ``DirectRunner`` uses for batch pipelines;
    naming it directly skips the Prism hand-off (and its binary download).

    Args:
        num_workers: worker processes. ``1`` runs in process; more use the
            ``multi_processing`` mode, one OS process per worker.

    Returns:
        A list of ``--flag=value`` strings for ``PipelineOptions`` or a TFX
        pipeline's ``beam_pipeline_args``.

    Raises:
        ValueError: if ``num_workers`` is not a positive integer.
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(
            f"num_workers must be a positive integer. Received: {num_workers!r}"
        )
    mode = "in_memory" if num_workers == 1 else "multi_processing"
    return [
        "--runner=FnApiRunner",
        f"--direct_running_mode={mode}",
        f"--direct_num_workers={num_workers}",
    ]
