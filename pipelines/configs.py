"""Pipeline profiles: sizes and budgets the runners pick from.

``cpu`` is the embedded demo: small synthetic images, a narrow ResNet18 and a
few hundred steps, sized to finish (data generation included) in under 15
minutes on 2 CPU cores. ``gpu`` is the paper-like setting for real data on a
GPU: 224 px base, 896 px MorphHR, full-width ResNet18.
"""

from __future__ import annotations

import dataclasses
from typing import Any

PIPELINE_NAME = "morphhr"


@dataclasses.dataclass(frozen=True)
class Profile:
    """One set of pipeline sizes and budgets."""

    name: str
    # Synthetic data set (local runner, when no --data-root is given).
    synthetic_patients: int
    synthetic_image_size: int
    # Ingestion and training.
    image_size: int
    base_resolution: int
    resolution: int
    width: int
    front_channels: int
    base_steps: int
    train_steps: int
    epochs: int
    batch_size: int
    learning_rate: float
    morph_learning_rate: float
    # Evaluation.
    auc_lower_bound: float
    eval_fraction: float = 0.2
    beam_workers: int = 1

    def training_config(self, model: str = "morphhr", **overrides: Any) -> dict:
        """The Trainer's ``custom_config`` for this profile."""
        config = {
            "model": model,
            "base_resolution": self.base_resolution,
            "resolution": self.resolution,
            "width": self.width,
            "front_channels": self.front_channels,
            "base_steps": self.base_steps,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "morph_learning_rate": self.morph_learning_rate,
        }
        config.update(overrides)
        return config


PROFILES = {
    "cpu": Profile(
        name="cpu",
        synthetic_patients=300,
        synthetic_image_size=512,
        image_size=256,
        base_resolution=128,
        resolution=256,
        width=16,
        front_channels=8,
        base_steps=600,
        train_steps=600,
        epochs=3,
        batch_size=16,
        learning_rate=2e-3,
        morph_learning_rate=1e-3,
        auc_lower_bound=0.65,
        eval_fraction=0.25,
        beam_workers=2,
    ),
    "gpu": Profile(
        name="gpu",
        synthetic_patients=400,
        synthetic_image_size=1024,
        image_size=896,
        base_resolution=224,
        resolution=896,
        width=64,
        front_channels=8,
        base_steps=3000,
        train_steps=3000,
        epochs=10,
        batch_size=32,
        learning_rate=1e-3,
        morph_learning_rate=3e-4,
        auc_lower_bound=0.65,
        beam_workers=4,
    ),
}
