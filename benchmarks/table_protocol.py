"""What the result tables' scripts share (``paper_table.py``,
``chestxray14_table.py``): the protocol's common settings, the process's
start of a stage, a progress-printing step timer and the split files."""

from __future__ import annotations

import dataclasses
import os
import time

from morphhr_tf.training.config import TrainingConfig


@dataclasses.dataclass(frozen=True)
class TableProfile:
    """The settings every row of a table shares (each script's ``Profile``
    adds its own, keyword-only)."""

    patients: int
    width: int
    batch_size: int
    #: Optimizer steps of the shared base network.
    base_steps: int
    #: Optimizer steps of every row, at every learning rate of ``lrs``.
    steps: int
    #: The base network's learning rate.
    learning_rate: float
    #: Every row trains once per learning rate here and keeps the one with the
    #: best eval AUC (the same grid, steps and data for every row).
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    trunk_lr_multiplier: float = 0.1
    front_channels: int = 8
    #: The trainer's default, so the table measures what users get.
    detail_branch: str = TrainingConfig.detail_branch
    seed: int = 0


def split_glob(data_dir: str, split: str) -> str:
    """The ingest's TFRecord files of one split."""
    return os.path.join(data_dir, f"Split-{split}", "*.gz")


def start_stage(profile: TableProfile) -> str:
    """The process's precision policy and seed, first thing in every stage."""
    import keras

    from morphhr_tf.training.precision import select_precision

    policy = select_precision("auto")
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(profile.seed)
    return policy


class StepTimer:
    """Keras callback: wall time of the steps after the first (tracing) one,
    and a progress line every tenth of ``total`` steps (a row trains for
    minutes; Keras' ``verbose=2`` prints once per epoch)."""

    def __new__(cls, label: str = "", total: int = 0, prefix: str = "paper_table"):
        import keras

        every = max(total // 10, 1)

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                now = time.perf_counter()
                if not hasattr(self, "start"):
                    self.start, self.steps = now, 0
                else:
                    self.steps += 1
                    self.end = now
                if total and (batch + 1) % every == 0:
                    loss = (logs or {}).get("loss", float("nan"))
                    print(
                        f"[{prefix}] {label} step {batch + 1}/{total} "
                        f"loss {float(loss):.4f}",
                        flush=True,
                    )

        return Timer()
