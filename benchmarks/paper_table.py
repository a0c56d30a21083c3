"""The paper's table on the synthetic benchmark: ResNet18 fine-tuned at S
against MorphHR-ResNet18 at S, for S in the profile's sizes.

    python benchmarks/paper_table.py --profile cpu     # docs/results_paper_table_cpu.md
    python benchmarks/paper_table.py --profile gpu
    python benchmarks/paper_table.py --profile smoke   # a minute, tiny sizes

Protocol (same for every row):

1. A synthetic CBIS-DDSM tree (``morphhr_tf.synthetic.cbis_ddsm``) is ingested once
   at the largest S: official train/test split by patient, eval carved from
   train by patient. The test patients are never seen in training.
2. One base ResNet18 is trained at the smallest S (the stand-in for the
   ImageNet-pretrained network the paper starts from).
3. Every row starts from that base and trains the same number of optimizer
   steps with the same seed, batch size and schedule, once per peak learning
   rate of the profile's grid (``lrs``), and keeps the rate whose **eval**
   AUC is best; it then reports the test split:
   - ``ResNet18_S``: the base's weights in a ResNet18 taking S x S inputs (the
     network is fully convolutional), every layer at the row's rate (plain
     fine-tuning, as the paper's baseline);
   - ``MorphHR-ResNet18_S``: ``build_morphhr(base, S, detail_branch=...)``
     (k = S / base), the new layers at the row's rate, the trunk at
     ``trunk_lr_multiplier`` times it.
4. AUC with a 95% stratified-bootstrap CI on the test split, DeLong's test
   against ResNet18 at the same S, training images/s and peak memory (each
   row runs in a fresh subprocess; CPU: peak RSS, GPU: TF's peak).

The rows train with the package's optimizer and data (``compile_layerwise``,
``make_dataset``); ``paper_table_report.py`` writes the table.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time

import morphhr_tf.runtime  # noqa: F401  (runtime policy before TensorFlow)

from paper_table_report import ROW_NAMES, write_results
from peak_memory import peak_memory_mb
from table_protocol import StepTimer, TableProfile, split_glob, start_stage

from morphhr_tf.training.config import TrainingConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile(TableProfile):
    synthetic_rows: int
    #: S of the rows; the base trains at the smallest, the data is stored at
    #: the largest.
    sizes: tuple[int, ...]
    fine_detail: bool = True


PROFILES = {
    "smoke": Profile(
        24, 4, 8, 20, 10, 2e-3, lrs=(1e-3,), synthetic_rows=256, sizes=(32, 64, 128)
    ),
    # S = 64 / 128 / 256 so that 18 runs fit the 90-minute budget on 2 cores.
    "cpu": Profile(
        300, 16, 16, 600, 600, 2e-3, synthetic_rows=512, sizes=(64, 128, 256)
    ),
    "gpu": Profile(
        600, 64, 32, 3000, 3000, 1e-3, synthetic_rows=2048, sizes=(224, 448, 896)
    ),
}


def _log(msg: str) -> None:
    print(
        f"[paper_table {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True
    )


def prepare_data(profile: Profile, work: str, workers: int) -> dict:
    """Generates and ingests the synthetic set once (reused when present)."""
    from morphhr_tf.data.ingest import run_ingest
    from morphhr_tf.synthetic.cbis_ddsm import generate

    raw, data = os.path.join(work, "synthetic"), os.path.join(work, "tfrecords")
    summary_path = os.path.join(data, "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    _log(
        f"generating {profile.patients} synthetic patients ({profile.synthetic_rows} rows)"
    )
    generate(
        raw,
        patients=profile.patients,
        seed=profile.seed,
        rows=profile.synthetic_rows,
        fine_detail=profile.fine_detail,
    )
    _log(f"ingesting at {max(profile.sizes)} px")
    return run_ingest(
        "cbis_ddsm",
        raw,
        data,
        image_size=max(profile.sizes),
        num_workers=workers,
        eval_fraction=0.2,
        private_dir=os.path.join(work, "private"),
    )


def protocol_config(profile: Profile, learning_rate: float) -> TrainingConfig:
    """The package's training options carrying this table's protocol (see
    :func:`_fit`), pinned here rather than taken from ``TrainingConfig``'s
    defaults so that the table stays put if those change: AdamW, weight decay
    1e-4, cosine decay after a linear warm-up over 5% of the steps,
    class-balanced sampling with augmentation, the profile's batch and seed."""
    return TrainingConfig(
        width=profile.width,
        front_channels=profile.front_channels,
        detail_branch=profile.detail_branch,
        batch_size=profile.batch_size,
        learning_rate=learning_rate,
        trunk_lr_multiplier=profile.trunk_lr_multiplier,
        schedule="cosine",
        warmup_fraction=0.05,
        weight_decay=1e-4,
        balance="sample",
        augment=True,
        seed=profile.seed,
    )


def _fit(model, config, data, size, steps, callbacks=(), **multipliers) -> None:
    """Trains ``model`` for ``steps`` steps of the train split at ``size`` px:
    the package's layer-wise AdamW (``compile_layerwise``; ``multipliers``
    are ``LayerwiseAdamW``'s) over its training dataset (``make_dataset``)."""
    from morphhr_tf.training.input_pipeline import make_dataset
    from morphhr_tf.training.stages import compile_layerwise

    compile_layerwise(model, config, steps, **multipliers)
    ds = make_dataset(
        split_glob(data, "train"), resolution=size, batch_size=config.batch_size,
        training=True, balance=config.balance, augment=config.augment,
        seed=config.seed,
    )  # fmt: skip
    model.fit(
        ds,
        steps_per_epoch=steps,
        epochs=1,
        verbose=2,
        callbacks=list(callbacks),
        shuffle=False,
    )


def train_base(profile: Profile, work: str) -> None:
    """Row 0: the shared base ResNet18 at the smallest S."""
    from morphhr_tf.models import resnet18

    start_stage(profile)
    size = min(profile.sizes)
    model = resnet18((size, size, 1), width=profile.width)
    # The base trains every layer at the full rate.
    config = protocol_config(profile, profile.learning_rate)
    data = os.path.join(work, "tfrecords")
    _fit(model, config, data, size, profile.base_steps)
    model.save(os.path.join(work, "base.keras"))


def _predict_split(model, data: str, split: str, size: int, path: str) -> None:
    """Writes ``image_key,label,probability`` for one split, in file order."""
    import numpy as np
    import tensorflow as tf

    from morphhr_tf.data import features as F
    from morphhr_tf.data.image_ops import decode_and_resize
    from morphhr_tf.data.tfrecord_codec import parse_example

    records = tf.data.TFRecordDataset(
        tf.io.gfile.glob(split_glob(data, split)), compression_type="GZIP"
    ).batch(16)
    keys, labels, probs = [], [], []
    for batch in records:
        ex = parse_example(batch)
        images = tf.map_fn(
            lambda png: decode_and_resize(png, size), ex[F.IMAGE],
            fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32),
        )  # fmt: skip
        probs.extend(np.asarray(model(images, training=False), np.float64).ravel())
        labels.extend(ex[F.LABEL].numpy().tolist())
        keys.extend(k.decode() for k in ex[F.IMAGE_KEY].numpy())
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{path}: the model produced non-finite probabilities")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_key", "label", "probability"])
        w.writerows(zip(keys, labels, probs))


def row_model(profile: Profile, work: str, kind: str, size: int) -> tuple:
    """The row's model, built from the base, with its learning-rate multipliers.

    ResNet18 rows: the base's weights at S x S, every layer at the row's rate.
    MorphHR rows: the new layers (``added_layers``) at the row's rate, the
    base's trunk at ``trunk_lr_multiplier`` times it.
    """
    import keras

    from morphhr_tf.models import build_morphhr, resnet18
    from morphhr_tf.models.morphhr import added_layers

    base = keras.saving.load_model(os.path.join(work, "base.keras"), compile=False)
    if kind == "resnet18":
        model = resnet18((size, size, 1), width=profile.width)
        model.set_weights(base.get_weights())
        return model, {"lr_multipliers": {}, "default_multiplier": 1.0}
    # "none": no branch, as the trainer reads TrainingConfig.detail_branch.
    branch = None if profile.detail_branch == "none" else profile.detail_branch
    model = build_morphhr(
        base,
        size,
        front_channels=profile.front_channels,
        detail_branch=branch,
        seed=profile.seed,
    )
    front = sorted(added_layers(model))
    return model, {
        "lr_multipliers": dict.fromkeys(front, 1.0),
        "default_multiplier": profile.trunk_lr_multiplier,
    }


def run_row(profile: Profile, work: str, kind: str, size: int, lr: float) -> dict:
    """Fine-tunes one row from the base at one learning rate; predicts eval and test.

    ResNet18 rows train every layer at `lr` (plain fine-tuning); MorphHR rows
    train the new layers at `lr` and the base's trunk at
    ``lr * trunk_lr_multiplier``.
    """
    from morphhr_tf.evaluation.metrics import auc
    from morphhr_tf.evaluation.report import read_predictions

    policy = start_stage(profile)
    data = os.path.join(work, "tfrecords")
    model, multipliers = row_model(profile, work, kind, size)
    timer = StepTimer(f"{kind} {size} px lr {lr:g}", profile.steps)
    config = protocol_config(profile, lr)
    _fit(model, config, data, size, profile.steps, [timer], **multipliers)
    img_per_s = timer.steps * profile.batch_size / max(timer.end - timer.start, 1e-9)
    stem = os.path.join(
        work, "predictions", f"{kind}_{size}_lr{lr:g}_steps{profile.steps}"
    )
    for split in ("eval", "test"):
        _predict_split(model, data, split, size, f"{stem}_{split}.csv")
    evaluation = read_predictions(f"{stem}_eval.csv")
    peak, what = peak_memory_mb()
    return {
        "kind": kind, "size": size, "lr": lr, "img_per_s": img_per_s,
        "peak_mb": peak, "memory_kind": what, "predictions": f"{stem}_test.csv",
        "eval_auc": auc(evaluation["labels"], evaluation["scores"]),
        "precision": policy, "params": int(model.count_params()),
        "seconds": timer.end - timer.start if timer.steps else 0.0,
    }  # fmt: skip


def _subprocess(args: list[str]) -> dict:
    """Runs one stage in a fresh process, echoing its progress to stderr."""
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    result = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
            else:
                sys.stderr.write(line)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return result


def _parse_rows(p: argparse.ArgumentParser, rows: str | None, wanted: list) -> list:
    """``--rows`` as ``(kind, size)`` pairs (all of ``wanted`` when unset)."""
    if not rows:
        return wanted
    try:
        chosen = [(k, int(v)) for k, v in (r.split(":") for r in rows.split(","))]
    except ValueError:
        p.error(f"--rows takes kind:size pairs. Received: {rows!r}")
    bad = [r for r in chosen if r not in wanted]
    if bad:
        p.error(f"--rows {bad} not in this profile's rows {wanted}")
    return chosen


def parse_args(argv=None) -> tuple[argparse.Namespace, Profile, list]:
    """``(args, profile, rows)``: the options, the profile with ``--steps``
    applied, and the ``(kind, size)`` rows to run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--work-dir", default=None)
    p.add_argument(
        "--out",
        default=None,
        help="markdown output (default docs/results_paper_table_cpu.md)",
    )
    p.add_argument("--workers", type=int, default=2, help="Beam ingest workers")
    p.add_argument("--stage", choices=["base", "row"], help=argparse.SUPPRESS)
    p.add_argument("--kind", choices=["resnet18", "morphhr"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=None, help="override the rows' steps")
    p.add_argument(
        "--rows",
        default=None,
        help="comma-separated rows to run, e.g. morphhr:224,morphhr:896 (default: all)",
    )
    args = p.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.steps is not None:
        if args.steps < 1:
            p.error(f"--steps must be positive. Received: {args.steps}")
        profile = dataclasses.replace(profile, steps=args.steps)
    wanted = [(k, s) for s in profile.sizes for k in ("resnet18", "morphhr")]
    return args, profile, _parse_rows(p, args.rows, wanted)


def run_stage(args: argparse.Namespace, profile: Profile, work: str) -> None:
    """One ``--stage`` in this process; prints its ``RESULT`` line."""
    if args.stage == "base":
        train_base(profile, work)
        print("RESULT {}", flush=True)
    else:
        result = run_row(profile, work, args.kind, args.size, args.lr)
        print("RESULT " + json.dumps(result), flush=True)


def best_of_grid(common: list[str], profile: Profile, kind: str, size: int) -> dict:
    """Runs one row once per learning rate of the grid (a subprocess each);
    returns the run with the best eval AUC, with every rate's in ``grid``."""
    runs = []
    for lr in profile.lrs:
        _log(f"row {ROW_NAMES[kind]}_S{size}, lr {lr:g} ({profile.steps} steps)")
        stage = ["--stage", "row", "--kind", kind, "--size", str(size)]
        runs.append(_subprocess([*common, *stage, "--lr", repr(lr)]))
        _log(f"eval AUC {runs[-1]['eval_auc']:.4f}")
    best = max(runs, key=lambda r: r["eval_auc"])
    best["grid"] = {f"{r['lr']:g}": round(r["eval_auc"], 4) for r in runs}
    return best


def main(argv=None) -> int:
    args, profile, wanted = parse_args(argv)
    work = os.path.abspath(args.work_dir or f"paper_table_work/{args.profile}")
    if args.stage:
        run_stage(args, profile, work)
        return 0

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_md = args.out or (
        os.path.join(root, "docs", "results_paper_table_cpu.md")
        if args.profile == "cpu"
        else os.path.join(work, f"results_{args.profile}.md")
    )
    start = time.time()
    os.makedirs(work, exist_ok=True)
    data_summary = prepare_data(profile, work, args.workers)
    common = ["--profile", args.profile, "--work-dir", work]
    if args.steps is not None:
        common += ["--steps", str(args.steps)]
    if not os.path.exists(os.path.join(work, "base.keras")):
        _log(f"training the base ResNet18 at {min(profile.sizes)} px")
        _subprocess([*common, "--stage", "base"])
    rows = [best_of_grid(common, profile, kind, size) for kind, size in wanted]
    path = write_results(
        args.profile, profile, rows, data_summary, time.time() - start, out_md,
        PROFILES[args.profile].steps,
    )  # fmt: skip
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
