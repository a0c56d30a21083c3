"""The Trainer's ``custom_config``, parsed into a validated dataclass.

Every key is optional; the defaults are the CPU demo's. Keys:

- ``model``: ``"morphhr"`` (two-stage MorphHR) or ``"resnet18"`` (plain
  fine-tuning baseline at ``resolution``).
- ``base_resolution`` / ``resolution``: the base network's input size S and the
  final input size k * S (MorphHR); ``resnet18`` trains at ``resolution``.
- ``width``: ResNet18 stem width (64 is the standard network).
- ``front_channels`` / ``front_blocks``: the MorphHR full-resolution front.
- ``detail_branch``: ``"antithetic"`` (default), ``"zeros"`` or ``"none"``:
  MorphHR's full-resolution, max-pooled detail branch and its exact
  initialisation (:mod:`morphhr_tf.models.detail_branch`). Without it MorphHR
  does not learn structures a pixel or two wide (``docs/results.md``).
- ``rematerialize_front``: stage 2 recomputes the front in the backward pass
  instead of keeping its full-resolution activations
  (:func:`morphhr_tf.models.rematerialize.recompute_front`): the same
  function, less memory for a little more compute (``docs/performance.md``).
  Default true.
- ``front_recompute_chunks``: slices of the batch the front is recomputed
  in, one at a time (default 4): the whole front and the downsampler, with
  gradients equal to the model's up to the order of their sums. 1 recomputes
  only the first front block, for the whole batch at once, with gradients
  bit for bit the model's.
- ``slice_detail_blocks``: with ``front_recompute_chunks`` > 1, the detail
  branch's full-resolution blocks train keeping only pooled tensors, their
  forward pass and full-size gradient made in the same slices
  (:class:`morphhr_tf.models.sliced_norm_block.SlicedNormBlock`): about 1.4-2 GB
  less at 896 px, batch 16, at the same throughput (``docs/performance.md``). Default true;
  false trains them as layers.
- ``xla_activations``: the front's P-activations train through XLA kernels
  on TensorFlow (:class:`morphhr_tf.layers.PActivation`'s ``xla_kernels``):
  the same numbers, faster; false keeps TensorFlow's ops, for a little less
  peak memory (``docs/performance.md``). Default true.
- ``base_steps``: stage-1 steps at ``base_resolution`` (skipped when
  ``pretrained`` is set). Stage 2 (or the baseline) runs the Trainer's
  ``train_args.num_steps``.
- ``epochs``: how many Keras epochs those steps are split into (logging,
  TensorBoard points).
- ``batch_size``: global batch size (split over the replicas).
- ``learning_rate``, ``morph_learning_rate`` (stage 2's peak learning rate;
  0 means ``learning_rate``), ``trunk_lr_multiplier`` (stage 2: the base trunk
  learns at ``morph_learning_rate * trunk_lr_multiplier``, the new front at
  ``morph_learning_rate``), ``schedule`` (``cosine`` with warm-up, or ``constant``),
  ``warmup_fraction``, ``weight_decay``.
- ``pretrained``: ``""`` (none), a ``.weights.h5`` file for the base ResNet18,
  a directory holding a keras-hub ``ResNetBackbone`` preset saved locally, or
  ``"base_model"`` (warm start from the Trainer's ``base_model`` input).
- ``precision``: ``auto``, ``float32``, ``mixed_float16``, ``mixed_bfloat16``.
- ``strategy``: ``auto``, ``mirrored``, ``one_device`` or ``multi_worker``
  (``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster, one
  process per worker; see :mod:`morphhr_tf.training.strategy`).
- ``task``: ``binary`` (one probability: any malignant finding; the
  mammography task) or ``multilabel`` (one sigmoid probability per name in
  ``label_names``, read from the records' ``labels`` feature; ChestX-ray14).
- ``label_names``: the ``multilabel`` task's label names, comma-separated,
  in the order of the records' ``labels`` (the ingest summary's
  ``label_names``); empty for ``binary``.
- ``balance``: ``sample`` (class-balanced sampling; ``binary`` only),
  ``class_weight`` (``binary``: a weight per example; ``multilabel``: a
  weight per label and example, ``n / (2 n_positive)`` for a positive and
  ``n / (2 n_negative)`` for a negative of that label) or ``none``.
- ``calibration``: ``platt`` (default), ``isotonic`` or ``none``: the map
  fitted on the eval split that the SavedModel applies to its
  probabilities (:mod:`morphhr_tf.training.finalize`).
- ``augment``: flips along the chest wall, small affine, intensity jitter.
- ``seed``.

Keys starting with ``ai_platform_`` belong to the TFX Google Cloud extension
(``tfx.extensions.google_cloud_ai_platform.Trainer``: Vertex AI job spec,
region, ...), which reads them from the same ``custom_config``; they are
ignored here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from morphhr_tf.training.precision import PRECISIONS
from morphhr_tf.training.strategy import STRATEGIES

MODELS = ("morphhr", "resnet18")
DETAIL_BRANCHES = ("zeros", "antithetic", "none")
SCHEDULES = ("cosine", "constant")
BALANCES = ("sample", "class_weight", "none")
TASKS = ("binary", "multilabel")
CALIBRATIONS = ("platt", "isotonic", "none")
# custom_config keys of tfx.extensions.google_cloud_ai_platform (its executor
# consumes them; run_fn sees them too).
PLATFORM_KEY_PREFIX = "ai_platform_"


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _parse_bool(key: str, value: Any) -> bool:
    """A strict boolean: JSON or string ``"false"`` is False, ``"maybe"`` an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(
        f"{key} must be a boolean (true/false, 1/0, yes/no). Received: {value!r}"
    )


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def check_type(name: str, value: Any, kind: type) -> None:
    """Raises ValueError unless ``value`` is a ``kind`` (a bool is no number).

    ``float`` accepts an ``int`` too; ``int`` and ``float`` refuse ``bool``.
    """
    if kind is float:
        ok = isinstance(value, (int, float))
    else:
        ok = isinstance(value, kind)
    if ok and kind is not bool and isinstance(value, bool):
        ok = False
    if not ok:
        what = _KINDS.get(kind, f"a {kind.__name__}")
        raise ValueError(f"{name} must be {what}. Received: {name}={value!r}")


def check_positive_ints(owner: Any, names: tuple[str, ...]) -> None:
    """Raises ValueError unless each named attribute of ``owner`` is an int >= 1."""
    for name in names:
        value = getattr(owner, name)
        check_type(name, value, int)
        if value < 1:
            raise ValueError(
                f"{name} must be a positive integer. Received: {name}={value!r}"
            )


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Validated training options (see the module docstring for each key)."""

    model: str = "morphhr"
    task: str = "binary"
    label_names: str = ""
    base_resolution: int = 128
    resolution: int = 256
    width: int = 16
    front_channels: int = 8
    front_blocks: int = 2
    detail_branch: str = "antithetic"
    rematerialize_front: bool = True
    front_recompute_chunks: int = 4
    slice_detail_blocks: bool = True
    xla_activations: bool = True
    base_steps: int = 600
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 2e-3
    morph_learning_rate: float = 1e-3
    trunk_lr_multiplier: float = 0.1
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-4
    pretrained: str = ""
    precision: str = "auto"
    strategy: str = "auto"
    balance: str = "sample"
    augment: bool = True
    calibration: str = "platt"
    seed: int = 0

    def __post_init__(self):
        # Field types first: dataclasses.replace() and the constructor take
        # values as given (from_custom_config parses JSON and strings).
        for field in dataclasses.fields(self):
            kind = type(field.default)
            check_type(field.name, getattr(self, field.name), kind)
            if kind is float:  # a canonical float, whatever number was given
                object.__setattr__(self, field.name, float(getattr(self, field.name)))
        for name, allowed in (
            ("model", MODELS),
            ("task", TASKS),
            ("calibration", CALIBRATIONS),
            ("schedule", SCHEDULES),
            ("balance", BALANCES),
            ("detail_branch", DETAIL_BRANCHES),
            ("precision", PRECISIONS),
            ("strategy", STRATEGIES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"{name} must be one of {allowed}. Received: {name}={value!r}"
                )
        check_positive_ints(
            self,
            (
                "base_resolution", "resolution", "width", "batch_size", "epochs",
                "front_recompute_chunks",
            ),
        )  # fmt: skip
        if self.model == "morphhr" and self.resolution % self.base_resolution:
            raise ValueError(
                "resolution must be an integer multiple of base_resolution. "
                f"Received: resolution={self.resolution}, "
                f"base_resolution={self.base_resolution}"
            )
        self._check_task()
        if self.base_steps < 0:
            raise ValueError(f"base_steps must be >= 0. Received: {self.base_steps}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(
                "warmup_fraction must lie in [0, 1). "
                f"Received: warmup_fraction={self.warmup_fraction}"
            )
        if (
            self.learning_rate <= 0
            or self.morph_learning_rate < 0
            or self.trunk_lr_multiplier < 0
        ):
            raise ValueError(
                "learning_rate must be > 0 and trunk_lr_multiplier >= 0. Received: "
                f"learning_rate={self.learning_rate}, "
                f"trunk_lr_multiplier={self.trunk_lr_multiplier}"
            )

    def _check_task(self) -> None:
        names = self.label_list
        if self.task == "binary" and names:
            raise ValueError(
                "label_names is for task='multilabel'; the binary task has one "
                f"label. Received: task='binary', label_names={self.label_names!r}"
            )
        if self.task == "multilabel":
            if not names:
                raise ValueError(
                    "task='multilabel' needs label_names, comma-separated in the "
                    "order of the records' labels (the ingest summary's "
                    f"label_names). Received: label_names={self.label_names!r}"
                )
            if len(set(names)) != len(names) or not all(names):
                raise ValueError(
                    "label_names must be distinct and non-empty. "
                    f"Received: label_names={self.label_names!r}"
                )
            if self.balance == "sample":
                raise ValueError(
                    "balance='sample' draws by one binary label; for "
                    "task='multilabel' use balance='class_weight' (a weight per "
                    "label) or 'none'. Received: balance='sample'"
                )

    @property
    def label_list(self) -> tuple[str, ...]:
        """The label names as a tuple (``()`` for the binary task)."""
        return (
            tuple(n.strip() for n in self.label_names.split(","))
            if (self.label_names.strip())
            else ()
        )

    @property
    def num_outputs(self) -> int:
        """The model's outputs: 1 (binary) or one per label name."""
        return len(self.label_list) if self.task == "multilabel" else 1

    @property
    def scale(self) -> int:
        """k = resolution / base_resolution (1 for the ``resnet18`` baseline)."""
        return self.resolution // self.base_resolution if self.model == "morphhr" else 1

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any] | None) -> TrainingConfig:
        """Builds the config from the Trainer's ``custom_config`` dict.

        Raises:
            ValueError: for an unknown key or an invalid value.
        """
        custom_config = {
            key: value
            for key, value in (custom_config or {}).items()
            if not key.startswith(PLATFORM_KEY_PREFIX)
        }
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(custom_config) - set(known))
        if unknown:
            raise ValueError(
                f"Unknown training option(s) {unknown}. Known: {sorted(known)}"
            )
        kwargs = {}
        for key, value in custom_config.items():
            default = known[key].default
            # JSON round trips turn ints into floats and vice versa.
            if isinstance(default, bool):
                value = _parse_bool(key, value)
            elif isinstance(default, int) and isinstance(value, float):
                if value != int(value):
                    raise ValueError(f"{key} must be an integer. Received: {value}")
                value = int(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_custom_config(self) -> dict[str, Any]:
        """Every option as a JSON-safe dict: the Trainer's ``custom_config``.

        ``from_custom_config`` of it (JSON round trip included) gives back an
        equal config.
        """
        return dataclasses.asdict(self)
