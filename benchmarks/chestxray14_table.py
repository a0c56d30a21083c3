"""ChestX-ray14 on the synthetic chest set: ResNet18 at S and 4S against MorphHR
at 4S, per-finding and mean AUC, with the fair protocol of the paper's table.

    python benchmarks/chestxray14_table.py --profile cpu    # docs/results_chestxray14_cpu.md
    python benchmarks/chestxray14_table.py --profile smoke  # a minute, tiny sizes

Protocol (that of ``benchmarks/paper_table.py``, for 14 sigmoid outputs):

1. One synthetic ChestX-ray14 tree (``morphhr_tf.synthetic.chestxray14``,
   ``frequencies="uniform"`` so that every finding has positives) is
   generated at 4S px and ingested once (source ``chestxray14``): the
   generator's ``test_list.txt`` is the test split, eval is carved from
   ``train_val_list.txt`` by patient. The run stops if a finding has no
   positive in eval or test.
2. One base ResNet18 (14 sigmoid outputs) is trained at S: the stand-in for
   the pretrained network every row starts from.
3. Every row starts from that base and trains the same number of optimizer
   steps with the same seed, batch size, schedule and data, once per peak
   learning rate of the grid, and keeps the rate with the best **eval**
   mean AUC (over the 14 findings); the test split is used only for the table:
   - ``ResNet18_S``: the base fine-tuned at S, every layer at the rate;
   - ``ResNet18_4S``: the base's weights in a ResNet18 taking 4S inputs (the
     network is fully convolutional), every layer at the rate;
   - ``MorphHR_4S``: ``build_morphhr(base, 4S, ...)``, the new layers at the
     rate, the trunk at ``trunk_lr_multiplier`` times it.
   The loss is the trainer's for ``task="multilabel"``,
   ``balance="class_weight"`` (each label weighted by its training
   frequency); AdamW, weight decay 1e-4, cosine decay after a 5% warm-up.
4. Test per-finding AUC with a 95% stratified-bootstrap CI, the mean AUC with
   a row-bootstrap CI, DeLong per finding and the paired-bootstrap mean-AUC
   difference of MorphHR_4S against each ResNet18 row
   (:mod:`morphhr_tf.evaluation.multilabel`); training images/s per row.

All runs share one process (``keras.backend.clear_session`` between them).
``chestxray14_table_report.py`` writes the predictions, the JSON, the ROC grid
and the markdown.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shlex
import sys
import time

import morphhr_tf.runtime  # noqa: F401  (runtime policy before TensorFlow)

from chestxray14_table_report import ROWS, write_labels, write_results
from table_protocol import StepTimer, TableProfile, split_glob, start_stage

from morphhr_tf.data.adapters.chestxray14 import FINDINGS
from morphhr_tf.training.config import TrainingConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile(TableProfile):
    base_size: int  # S
    scale: int  # k: the high-resolution rows take k * S
    #: Off, as in the published run (docs/results_chestxray14_cpu.md): then,
    #: the package's augmentation also flipped chest radiographs up-down; it
    #: no longer does (input_pipeline.augment_image(flip=False)).
    augment: bool = False
    n_bootstrap: int = 2000
    #: Stop unless every finding has a positive in eval and test.
    strict_findings: bool = True

    @property
    def size(self) -> int:
        """4S: the stored image size and the high-resolution rows' input."""
        return self.base_size * self.scale


PROFILES = {
    # One rate, so that the test runs in under two minutes.
    "smoke": Profile(
        patients=100,
        width=4,
        batch_size=8,
        base_steps=4,
        steps=4,
        learning_rate=2e-3,
        lrs=(1e-3,),
        base_size=32,
        scale=4,
        n_bootstrap=500,
        strict_findings=False,
    ),
    # S = 64, 4S = 256: 9 runs plus the base in about 45 minutes on 2 cores.
    "cpu": Profile(900, 16, 16, 300, 240, 2e-3, base_size=64, scale=4),
}


def _log(msg: str) -> None:
    print(f"[chestxray14_table {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def count_positives(data: str) -> dict[str, dict[str, int]]:
    """Images and positives per finding of every split."""
    from morphhr_tf.training.input_pipeline import count_label_matrix

    counts = {}
    for split in ("train", "eval", "test"):
        n, positives = count_label_matrix(split_glob(data, split), len(FINDINGS))
        counts[split] = {"images": n, **dict(zip(FINDINGS, positives, strict=True))}
    return counts


def prepare_data(profile: Profile, work: str, workers: int) -> dict:
    """Generates and ingests the synthetic chest set once (reused when present).

    Raises:
        ValueError: if ``strict_findings`` and a finding has no
            positive in the eval or test split.
    """
    from morphhr_tf.data.ingest import run_ingest
    from morphhr_tf.synthetic.chestxray14 import generate

    raw, data = os.path.join(work, "synthetic"), os.path.join(work, "tfrecords")
    summary_path = os.path.join(work, "data_summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    _log(f"generating {profile.patients} synthetic patients at {profile.size} px")
    made = generate(
        raw,
        patients=profile.patients,
        seed=profile.seed,
        size=profile.size,
        frequencies="uniform",
    )
    _log(f"ingesting {made['images']} images at {profile.size} px")
    ingest = run_ingest(
        "chestxray14",
        raw,
        data,
        image_size=profile.size,
        num_workers=workers,
        eval_fraction=0.2,
        progress=False,
        private_dir=os.path.join(work, "private"),
    )
    counts = count_positives(data)
    missing = {
        split: [f for f in FINDINGS if counts[split][f] == 0]
        for split in ("eval", "test")
    }
    if profile.strict_findings and any(missing.values()):
        raise ValueError(
            f"Findings without a positive: {missing}. Raise the profile's patients "
            f"(received patients={profile.patients})."
        )
    summary = {
        "generated": {k: v for k, v in made.items() if k != "boxes"},
        "ingested": ingest.get("per_split", {}),
        "counts": counts,
    }
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def protocol_config(profile: Profile, learning_rate: float) -> TrainingConfig:
    """The trainer's multilabel options carrying this table's protocol, pinned
    here so that the table stays put if ``TrainingConfig``'s defaults change."""
    return TrainingConfig(
        task="multilabel",
        label_names=",".join(FINDINGS),
        base_resolution=profile.base_size,
        resolution=profile.size,
        width=profile.width,
        front_channels=profile.front_channels,
        detail_branch=profile.detail_branch,
        batch_size=profile.batch_size,
        learning_rate=learning_rate,
        morph_learning_rate=learning_rate,
        trunk_lr_multiplier=profile.trunk_lr_multiplier,
        schedule="cosine",
        warmup_fraction=0.05,
        weight_decay=1e-4,
        balance="class_weight",
        augment=profile.augment,
        calibration="none",
        seed=profile.seed,
    )


def _splits(config: TrainingConfig, data: str):
    """The trainer's :class:`~morphhr_tf.training.stages.Splits` (its loss
    weights each label by its training frequency)."""
    import tensorflow as tf

    from morphhr_tf.training.stages import read_splits

    splits, _ = read_splits(
        config,
        tf.distribute.get_strategy(),
        [split_glob(data, "train")],
        [split_glob(data, "eval")],
    )
    return splits


def fit(model, config, splits, size, steps, label, **multipliers) -> float:
    """Trains ``model`` ``steps`` steps at ``size`` px with the trainer's
    layer-wise AdamW and loss; prints a line every tenth of the steps.

    Returns:
        Training images per second after the first (tracing) step.
    """
    from morphhr_tf.training.input_pipeline import make_dataset
    from morphhr_tf.training.stages import compile_layerwise

    compile_layerwise(model, config, steps, loss=splits.loss(config), **multipliers)
    ds = make_dataset(
        splits.train_files,
        resolution=size,
        batch_size=config.batch_size,
        training=True,
        balance="none",
        augment=config.augment,
        seed=config.seed,
        num_labels=config.num_outputs,
    )
    timer = StepTimer(label, steps, prefix="chestxray14_table")
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    if not getattr(timer, "steps", 0):
        return float("nan")
    return timer.steps * config.batch_size / max(timer.end - timer.start, 1e-9)


def predict_split(model, data: str, split: str, size: int, path: str) -> tuple:
    """Writes ``image_key`` and one probability column per finding for one
    split; returns ``(probabilities [N, 14], labels [N, 14], keys)``."""
    import numpy as np

    from morphhr_tf.data import features as F
    from morphhr_tf.training.checks import predict
    from morphhr_tf.training.input_pipeline import make_dataset, read_string_features

    pattern = split_glob(data, split)
    ds = make_dataset(
        pattern,
        resolution=size,
        batch_size=32,
        training=False,
        num_labels=len(FINDINGS),
    )
    probs, labels = predict(model, ds)
    keys = read_string_features(pattern, [F.IMAGE_KEY])[F.IMAGE_KEY]
    if not np.all(np.isfinite(probs)) or len(keys) != len(probs):
        raise ValueError(f"{path}: non-finite probabilities or keys/rows mismatch")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_key", *FINDINGS])
        w.writerows([k, *(f"{p:.8g}" for p in row)] for k, row in zip(keys, probs))
    return probs, labels.astype(int), keys


def train_base(profile: Profile, work: str) -> None:
    """The shared base ResNet18 at S (14 sigmoid outputs)."""
    from morphhr_tf.models import resnet18
    from morphhr_tf.training.checks import auc

    start_stage(profile)
    config = protocol_config(profile, profile.learning_rate)
    data = os.path.join(work, "tfrecords")
    size = profile.base_size
    model = resnet18(
        (size, size, 1),
        width=profile.width,
        num_classes=len(FINDINGS),
        multi_label=True,
    )
    label = f"base {size} px lr {profile.learning_rate:g}"
    img_s = fit(model, config, _splits(config, data), size, profile.base_steps, label)
    stem = os.path.join(work, "predictions", "base")
    p_eval, y_eval, _ = predict_split(model, data, "eval", size, f"{stem}_eval.csv")
    summary = {"eval_mean_auc": auc(y_eval, p_eval), "img_per_s": img_s}
    _log(f"base: eval mean AUC {summary['eval_mean_auc']:.4f}")
    with open(os.path.join(work, "base.json"), "w") as f:
        json.dump(summary, f)
    model.save(os.path.join(work, "base.keras"))


def row_model(profile: Profile, work: str, row: str, config: TrainingConfig):
    """``(model, input size, optimizer multipliers, morph check)`` of a row."""
    import keras

    from morphhr_tf.models import build_morphhr, resnet18
    from morphhr_tf.models.morphhr import added_layers
    from morphhr_tf.training.checks import morph_check

    base = keras.saving.load_model(os.path.join(work, "base.keras"), compile=False)
    if row in ("ResNet18_S", "ResNet18_4S"):
        size = profile.base_size if row == "ResNet18_S" else profile.size
        model = resnet18(
            (size, size, 1),
            width=profile.width,
            num_classes=len(FINDINGS),
            multi_label=True,
        )
        model.set_weights(base.get_weights())
        return model, size, {}, {}
    model = build_morphhr(
        base,
        profile.size,
        front_channels=config.front_channels,
        front_blocks=config.front_blocks,
        detail_branch=None if config.detail_branch == "none" else config.detail_branch,
        seed=config.seed,
    )
    check = morph_check(
        base, model, [split_glob(os.path.join(work, "tfrecords"), "eval")], config
    )
    multipliers = {
        "lr_multipliers": dict.fromkeys(sorted(added_layers(model)), 1.0),
        "default_multiplier": config.trunk_lr_multiplier,
    }
    return model, profile.size, multipliers, check


def run_row(profile: Profile, work: str, row: str, lr: float) -> dict:
    """Fine-tunes one row from the base at one rate; predicts eval and test."""
    import keras

    from morphhr_tf.training.checks import auc

    keras.backend.clear_session()
    policy = start_stage(profile)
    config = protocol_config(profile, lr)
    data = os.path.join(work, "tfrecords")
    model, size, multipliers, check = row_model(profile, work, row, config)
    label = f"{row} {size} px lr {lr:g}"
    start = time.time()
    img_s = fit(
        model, config, _splits(config, data), size, profile.steps, label, **multipliers
    )
    stem = os.path.join(work, "predictions", f"{row}_lr{lr:g}")
    p_eval, y_eval, _ = predict_split(model, data, "eval", size, f"{stem}_eval.csv")
    _, y_test, keys = predict_split(model, data, "test", size, f"{stem}_test.csv")
    write_labels(y_test, keys, os.path.join(work, "predictions", "test_labels.csv"))
    return {
        "row": row,
        "size": size,
        "lr": lr,
        "img_per_s": img_s,
        "eval_mean_auc": auc(y_eval, p_eval),
        "precision": policy,
        "params": int(model.count_params()),
        "seconds": round(time.time() - start, 1),
        "predictions": f"{stem}_test.csv",
        **check,
    }


def best_of_grid(profile: Profile, work: str, row: str) -> dict:
    """Runs ``row`` at every rate of the grid; returns the run with the best
    eval mean AUC, with every rate's eval mean AUC in ``grid``."""
    runs = []
    for lr in profile.lrs:
        _log(f"row {row}, lr {lr:g} ({profile.steps} steps)")
        runs.append(run_row(profile, work, row, lr))
        _log(
            f"{row} lr {lr:g}: eval mean AUC {runs[-1]['eval_mean_auc']:.4f}, "
            f"{runs[-1]['img_per_s']:.1f} img/s, {runs[-1]['seconds']:.0f} s"
        )
    best = max(runs, key=lambda r: r["eval_mean_auc"])
    best["grid"] = {f"{r['lr']:g}": round(r["eval_mean_auc"], 4) for r in runs}
    best["runs"] = [{k: v for k, v in r.items() if k != "predictions"} for r in runs]
    return best


def parse_args(argv=None) -> tuple[argparse.Namespace, Profile]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--work-dir", default=None)
    p.add_argument(
        "--out",
        default=None,
        help="markdown output (cpu: docs/results_chestxray14_cpu.md); the "
        "predictions, JSON and ROC grid go to a folder of the same stem",
    )
    p.add_argument("--workers", type=int, default=2, help="Beam ingest workers")
    p.add_argument("--steps", type=int, default=None, help="override the rows' steps")
    args = p.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.steps is not None:
        if args.steps < 1:
            p.error(f"--steps must be positive. Received: {args.steps}")
        profile = dataclasses.replace(profile, steps=args.steps)
    return args, profile


def main(argv=None) -> int:
    args, profile = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/chestxray14_table.py", *argv])
    work = os.path.abspath(args.work_dir or f"chestxray14_table_work/{args.profile}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_md = os.path.abspath(
        args.out
        or (
            os.path.join(root, "docs", "results_chestxray14_cpu.md")
            if args.profile == "cpu"
            else os.path.join(work, f"results_chestxray14_{args.profile}.md")
        )
    )
    start = time.time()
    os.makedirs(work, exist_ok=True)
    data_summary = prepare_data(profile, work, args.workers)
    _log(f"positives per split: {json.dumps(data_summary['counts'])}")
    if not os.path.exists(os.path.join(work, "base.keras")):
        _log(f"training the base ResNet18 at {profile.base_size} px")
        train_base(profile, work)
    rows = [best_of_grid(profile, work, row) for row in ROWS]
    with open(os.path.join(work, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)  # the report can be rewritten from these
    with open(os.path.join(work, "base.json")) as f:
        base = json.load(f)
    path = write_results(
        args.profile,
        profile,
        rows,
        {**data_summary, "base": base},
        time.time() - start,
        out_md,
        command,
    )
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
