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
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time

import morphhr_tf.runtime  # noqa: F401  (runtime policy before TensorFlow)

from morphhr_tf.training.config import TrainingConfig

PAPER_AUC = {  # CBIS-DDSM test AUCs reported by Wei et al. (2021)
    ("resnet18", 224): 0.7257,
    ("resnet18", 448): 0.7882,
    ("resnet18", 896): 0.7958,
    ("morphhr", 224): 0.7523,
    ("morphhr", 448): 0.7836,
    ("morphhr", 896): 0.7964,
}


@dataclasses.dataclass(frozen=True)
class Profile:
    patients: int
    synthetic_rows: int
    sizes: tuple[int, ...]
    width: int
    batch_size: int
    base_steps: int
    steps: int
    learning_rate: float
    #: Every row trains once per learning rate here and keeps the one with the
    #: best eval AUC (the same grid, steps and data for every row).
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    trunk_lr_multiplier: float = 0.1
    front_channels: int = 8
    #: The trainer's default, so the table measures what users get.
    detail_branch: str = TrainingConfig.detail_branch
    fine_detail: bool = True
    seed: int = 0


PROFILES = {
    "smoke": Profile(24, 256, (32, 64, 128), 4, 8, 20, 10, 2e-3, lrs=(1e-3,)),
    # S = 64 / 128 / 256 so that 18 runs fit the 90-minute budget on 2 cores.
    "cpu": Profile(300, 512, (64, 128, 256), 16, 16, 600, 600, 2e-3),
    "gpu": Profile(600, 2048, (224, 448, 896), 64, 32, 3000, 3000, 1e-3),
}

ROW_NAMES = {"resnet18": "ResNet18", "morphhr": "MorphHR-ResNet18"}


def _log(msg: str) -> None:
    print(
        f"[paper_table {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True
    )


def _peak_memory_mb() -> tuple[float, str]:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return tf.config.experimental.get_memory_info("GPU:0")[
            "peak"
        ] / 2**20, "GPU peak"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "peak RSS"


def _split_glob(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"Split-{split}", "*.gz")


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


def _optimizer(
    profile: Profile, steps: int, learning_rate: float, trunk_multiplier: float,
    front_layers=(),
):  # fmt: skip
    from morphhr_tf.training.schedule import LayerwiseAdamW, make_learning_rate

    lr = make_learning_rate(learning_rate, steps, kind="cosine", warmup_fraction=0.05)
    return LayerwiseAdamW(
        learning_rate=lr,
        weight_decay=1e-4,
        lr_multipliers=dict.fromkeys(front_layers, 1.0),
        default_multiplier=trunk_multiplier,
    )


class _StepTimer:
    """Keras callback: wall time of the steps after the first (tracing) one,
    and a progress line every tenth of ``total`` steps (a row trains for
    minutes; Keras' ``verbose=2`` prints once per epoch)."""

    def __new__(cls, label: str = "", total: int = 0):
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
                        f"[paper_table] {label} step {batch + 1}/{total} "
                        f"loss {float(loss):.4f}",
                        flush=True,
                    )

        return Timer()


def _compile(model, optimizer):
    import keras

    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy())


def train_base(profile: Profile, work: str) -> None:
    """Row 0: the shared base ResNet18 at the smallest S."""
    import keras

    from morphhr_tf.models import resnet18
    from morphhr_tf.training.input_pipeline import make_dataset
    from morphhr_tf.training.precision import select_precision

    keras.config.set_dtype_policy(select_precision("auto"))
    keras.utils.set_random_seed(profile.seed)
    data = os.path.join(work, "tfrecords")
    size = min(profile.sizes)
    ds = make_dataset(
        _split_glob(data, "train"), resolution=size, batch_size=profile.batch_size,
        training=True, balance="sample", augment=True, seed=profile.seed,
    )  # fmt: skip
    model = resnet18((size, size, 1), width=profile.width)
    # The base trains every layer at the full rate.
    opt = _optimizer(profile, profile.base_steps, profile.learning_rate, 1.0)
    _compile(model, opt)
    model.fit(
        ds, steps_per_epoch=profile.base_steps, epochs=1, verbose=2, shuffle=False
    )
    model.save(os.path.join(work, "base.keras"))


def _predict_split(model, data: str, split: str, size: int, path: str) -> None:
    """Writes ``image_key,label,probability`` for one split, in file order."""
    import numpy as np
    import tensorflow as tf

    from morphhr_tf.data import features as F
    from morphhr_tf.data.image_ops import decode_and_resize
    from morphhr_tf.data.tfrecord_codec import parse_example

    records = tf.data.TFRecordDataset(
        tf.io.gfile.glob(_split_glob(data, split)), compression_type="GZIP"
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


def run_row(profile: Profile, work: str, kind: str, size: int, lr: float) -> dict:
    """Fine-tunes one row from the base at one learning rate; predicts eval and test.

    ResNet18 rows train every layer at `lr` (plain fine-tuning); MorphHR rows
    train the new layers at `lr` and the base's trunk at
    ``lr * trunk_lr_multiplier``.
    """
    import keras

    from morphhr_tf.evaluation.metrics import auc
    from morphhr_tf.evaluation.report import read_predictions
    from morphhr_tf.models import build_morphhr, resnet18
    from morphhr_tf.models.morphhr import added_layers
    from morphhr_tf.training.input_pipeline import make_dataset
    from morphhr_tf.training.precision import select_precision

    policy = select_precision("auto")
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(profile.seed)
    data = os.path.join(work, "tfrecords")
    base = keras.saving.load_model(os.path.join(work, "base.keras"), compile=False)
    if kind == "resnet18":
        model = resnet18((size, size, 1), width=profile.width)
        model.set_weights(base.get_weights())
        front, trunk_multiplier = (), 1.0
    else:
        model = build_morphhr(
            base,
            size,
            front_channels=profile.front_channels,
            detail_branch=profile.detail_branch,
            seed=profile.seed,
        )
        front = sorted(added_layers(model))
        trunk_multiplier = profile.trunk_lr_multiplier
    _compile(model, _optimizer(profile, profile.steps, lr, trunk_multiplier, front))
    ds = make_dataset(
        _split_glob(data, "train"), resolution=size, batch_size=profile.batch_size,
        training=True, balance="sample", augment=True, seed=profile.seed,
    )  # fmt: skip
    timer = _StepTimer(f"{kind} {size} px lr {lr:g}", profile.steps)
    model.fit(
        ds,
        steps_per_epoch=profile.steps,
        epochs=1,
        verbose=2,
        callbacks=[timer],
        shuffle=False,
    )
    img_per_s = timer.steps * profile.batch_size / max(timer.end - timer.start, 1e-9)
    stem = os.path.join(
        work, "predictions", f"{kind}_{size}_lr{lr:g}_steps{profile.steps}"
    )
    for split in ("eval", "test"):
        _predict_split(model, data, split, size, f"{stem}_{split}.csv")
    evaluation = read_predictions(f"{stem}_eval.csv")
    peak, what = _peak_memory_mb()
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


def _versions() -> str:
    import keras
    import tensorflow as tf

    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"


def write_results(profile_name, profile, rows, data_summary, wall, out_md, work) -> str:
    import numpy as np

    from morphhr_tf.evaluation import metrics as M
    from morphhr_tf.evaluation import plots
    from morphhr_tf.evaluation.report import read_predictions

    preds = {(r["kind"], r["size"]): read_predictions(r["predictions"]) for r in rows}
    lines = [
        "| model | resolution | lr (eval AUC per lr) | test AUC [95% CI] "
        "| DeLong p vs ResNet18 at same S | train img/s | peak memory (MB) "
        "| paper AUC (CBIS-DDSM) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("resnet18", "morphhr"):
        for r in (r for r in rows if r["kind"] == kind):
            d = preds[(kind, r["size"])]
            auc = M.auc_with_ci(d["labels"], d["scores"], n_bootstrap=2000)
            smallest = min(x["size"] for x in rows if x["kind"] == kind)
            if kind == "morphhr" and ("resnet18", r["size"]) in preds:
                ref_key = ("resnet18", r["size"])
            elif (
                r["size"] != smallest
            ):  # no ResNet18 row: against this model at its smallest S
                ref_key = (kind, smallest)
            else:
                ref_key = None
            if ref_key is None:
                p = "-"
            else:
                ref = preds[ref_key]
                assert ref["keys"] == d["keys"]
                t = M.delong_test(d["labels"], d["scores"], ref["scores"])
                p = f"{t.p_value:.3g} ({t.difference:+.4f})"
                if ref_key[0] == kind:
                    p += f" vs {ROW_NAMES[kind]}_S{smallest}"
            paper = PAPER_AUC.get((kind, r["size"]))
            lines.append(
                f"| {ROW_NAMES[kind]}_S{r['size']} | {r['size']} | {r['lr']:g} "
                f"({', '.join(f'{k}: {v}' for k, v in r['grid'].items())}) | {auc} | {p} | "
                f"{r['img_per_s']:.2f} | {r['peak_mb']:.0f} | "
                f"{paper if paper is not None else '-'} |"
            )
    table = "\n".join(lines)
    print(table)
    plot_dir = os.path.dirname(out_md)
    # The ROC figure sits beside the markdown, named after it.
    stem = os.path.splitext(os.path.basename(out_md))[0] + (
        ""
        if profile.steps == PROFILES[profile_name].steps
        else f"_steps{profile.steps}"
    )
    curves = {
        f"{ROW_NAMES[k]}_S{s}": (d["labels"], d["scores"])
        for (k, s), d in preds.items()
    }
    plots.plot_roc(curves, os.path.join(plot_dir, f"{stem}_roc.png"), ci_band=False,
                   title=f"Synthetic test split ({profile_name} profile)")  # fmt: skip
    labels = next(iter(preds.values()))["labels"]
    counts = data_summary.get("per_split", {})
    text = f"""# Results: the paper's table on the synthetic benchmark

Produced by `python benchmarks/paper_table.py --profile {profile_name}` on
{platform.machine()} with {os.cpu_count()} CPU cores ({_versions()}), precision
`{rows[0]["precision"]}`; wall time {wall / 60:.1f} minutes.

Data: {profile.patients} synthetic patients ({profile.synthetic_rows}-row images,
ingested at {max(profile.sizes)} px); splits (images) {json.dumps(counts)}; the test
split has {len(labels)} images, {int(np.sum(labels))} malignant.
Training: ResNet18 width {profile.width}, base trained {profile.base_steps} steps at
{min(profile.sizes)} px (learning rate {profile.learning_rate}) on the train split, then
every row {profile.steps} steps, batch {profile.batch_size}, AdamW with cosine decay, once
per peak learning rate in {list(profile.lrs)}; each row keeps the rate with the best
eval AUC (chosen on the eval split, never on test). ResNet18 rows train every layer at
that rate; MorphHR rows (detail branch `{profile.detail_branch}`) train the new layers
at it and the trunk at x{profile.trunk_lr_multiplier}. Class-balanced sampling, seed
{profile.seed}; fine-detail specks in the data: {profile.fine_detail}.

{table}

DeLong: two-sided, paired on the same test images, MorphHR minus ResNet18 in
brackets. The paper's column is CBIS-DDSM (real mammograms, full-width ImageNet
ResNet18 on a GPU), given for reference only: the synthetic data and the narrow
CPU network make the absolute numbers incomparable; the comparison that matters
is between rows of this table.

![ROC curves]({stem}_roc.png)
"""
    with open(out_md, "w") as f:
        f.write(text)
    return out_md


def main(argv=None) -> int:
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
    if args.rows:
        try:
            chosen = [
                (k, int(v)) for k, v in (r.split(":") for r in args.rows.split(","))
            ]
        except ValueError:
            p.error(f"--rows takes kind:size pairs. Received: {args.rows!r}")
        bad = [r for r in chosen if r not in wanted]
        if bad:
            p.error(f"--rows {bad} not in this profile's rows {wanted}")
        wanted = chosen
    work = os.path.abspath(args.work_dir or f"paper_table_work/{args.profile}")
    if args.stage == "base":
        train_base(profile, work)
        print("RESULT {}", flush=True)
        return 0
    if args.stage == "row":
        result = run_row(profile, work, args.kind, args.size, args.lr)
        print("RESULT " + json.dumps(result), flush=True)
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
    rows = []
    for kind, size in wanted:
        runs = []
        for lr in profile.lrs:
            _log(f"row {ROW_NAMES[kind]}_S{size}, lr {lr:g} ({profile.steps} steps)")
            runs.append(
                _subprocess(
                    [
                        *common,
                        "--stage",
                        "row",
                        "--kind",
                        kind,
                        "--size",
                        str(size),
                        "--lr",
                        repr(lr),
                    ]
                )  # fmt: skip
            )
            _log(f"eval AUC {runs[-1]['eval_auc']:.4f}")
        best = max(runs, key=lambda r: r["eval_auc"])
        best["grid"] = {f"{r['lr']:g}": round(r["eval_auc"], 4) for r in runs}
        rows.append(best)
    path = write_results(
        args.profile, profile, rows, data_summary, time.time() - start, out_md, work
    )
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
