"""Pipeline profiles: sizes and budgets the runners pick from.

``cpu`` is the embedded demo: small synthetic images, a narrow ResNet18 and a
few hundred steps, sized to finish (data generation included) in about 8
minutes on 2 CPU cores with ``avx512_bf16`` (about 27 on 2 cores with AVX2
only, in float32). ``gpu`` is the paper-like setting for real data on a
GPU: 224 px base, 896 px MorphHR, full-width ResNet18.

A :class:`Profile` is frozen and validated when built: the runners apply
their command-line overrides with ``dataclasses.replace`` (on the profile, its
``training`` :class:`~morphhr_tf.training.config.TrainingConfig` and its
``ingest`` :class:`IngestConfig`), so a bad value raises ``ValueError`` before
any data is generated or any component runs.
"""

from __future__ import annotations

import dataclasses

from morphhr_tf.runtime import check_worker_mode

from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE
from morphhr_tf.training.config import (
    TrainingConfig,
    check_positive_ints,
    check_type,
)

PIPELINE_NAME = "morphhr"


def for_source(profile: Profile, source: str) -> Profile:
    """``profile`` with the training task its data source needs.

    A multi-label source (ChestX-ray14) trains ``task="multilabel"`` on its
    label names, balanced per label in the loss (``class_weight``: the
    binary task's class-balanced sampling does not apply); the binary
    sources leave the profile as it is. Pure.
    """
    from morphhr_tf.data.adapters import label_names

    names = label_names(source)
    if not names:
        return profile
    training = dataclasses.replace(
        profile.training,
        task="multilabel",
        label_names=",".join(names),
        balance=(
            "class_weight"
            if profile.training.balance == "sample"
            else profile.training.balance
        ),
    )
    return dataclasses.replace(profile, training=training)


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """The DicomExampleGen's options.

    Args:
        image_size: stored image size in pixels.
        eval_fraction: fraction of the training patients held out for eval.
        beam_workers: local Beam workers for the DICOM decoding.
        beam_worker_mode: how more than one runs, ``"processes"`` or
            ``"threads"`` (:data:`morphhr_tf.runtime.WORKER_MODES`).

    Raises:
        ValueError: for a non-positive size or worker count, or an
            ``eval_fraction`` outside [0, 1).
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    eval_fraction: float = 0.2
    beam_workers: int = 1
    beam_worker_mode: str = "processes"

    def __post_init__(self):
        check_positive_ints(self, ("image_size", "beam_workers"))
        check_worker_mode(self.beam_worker_mode, "beam_worker_mode")
        check_type("eval_fraction", self.eval_fraction, float)
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(
                f"eval_fraction must lie in [0, 1). Received: {self.eval_fraction!r}"
            )


@dataclasses.dataclass(frozen=True)
class Profile:
    """One set of pipeline sizes and budgets.

    Args:
        name: the profile's key in :data:`PROFILES`.
        training: the Trainer's options (its ``custom_config`` is
            ``training.to_custom_config()``).
        ingest: the ExampleGen's options.
        train_steps: the Trainer's ``train_args.num_steps`` (the final stage).
        auc_lower_bound: overall eval AUC needed for the blessing.
        synthetic_patients, synthetic_rows: the synthetic data set the
            local runner generates when no data is given (patients, and
            rows of its DICOMs).

    Raises:
        ValueError: for a non-positive step count or synthetic size, or an
            ``auc_lower_bound`` outside [0, 1].
    """

    name: str
    training: TrainingConfig
    ingest: IngestConfig
    train_steps: int
    auc_lower_bound: float
    synthetic_patients: int
    synthetic_rows: int

    def __post_init__(self):
        check_type("training", self.training, TrainingConfig)
        check_type("ingest", self.ingest, IngestConfig)
        check_positive_ints(
            self, ("train_steps", "synthetic_patients", "synthetic_rows")
        )
        check_type("auc_lower_bound", self.auc_lower_bound, float)
        if not 0.0 <= self.auc_lower_bound <= 1.0:
            raise ValueError(
                "auc_lower_bound must lie in [0, 1]. "
                f"Received: {self.auc_lower_bound!r}"
            )


PROFILES = {
    "cpu": Profile(
        name="cpu",
        # The TrainingConfig defaults are the demo's (one place for them).
        training=TrainingConfig(),
        ingest=IngestConfig(image_size=256, eval_fraction=0.25, beam_workers=2),
        train_steps=600,
        auc_lower_bound=0.65,
        synthetic_patients=300,
        synthetic_rows=512,
    ),
    "gpu": Profile(
        name="gpu",
        training=TrainingConfig(
            base_resolution=224,
            resolution=896,
            width=64,
            front_channels=8,
            base_steps=3000,
            epochs=10,
            batch_size=32,
            learning_rate=1e-3,
            morph_learning_rate=3e-4,
        ),
        ingest=IngestConfig(image_size=896, beam_workers=4),
        train_steps=3000,
        auc_lower_bound=0.65,
        synthetic_patients=400,
        synthetic_rows=1024,
    ),
}
