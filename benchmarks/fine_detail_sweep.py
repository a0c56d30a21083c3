"""Which network turns fine detail into AUC? A sweep on the fine-detail task.

Backend-agnostic (Keras 3 on TensorFlow, JAX or PyTorch; numpy data, no
``tf.data``), so it runs unchanged on a GPU machine that has no TensorFlow:

    MORPHHR_MODEL_SIDE_ONLY=1 KERAS_BACKEND=jax \\
        python benchmarks/fine_detail_sweep.py --out sweep.json
    python benchmarks/fine_detail_sweep.py --dry-run --out /tmp/sweep.json

Protocol (every row the same): the fine-detail task
(:mod:`morphhr_tf.synthetic.fine_detail`) at ``size`` (= 4S) with disjoint
train / eval / test images and a disjoint *pretraining* pool. The base
ResNet18 is trained at S on the pretraining pool only (a stand-in for an
ImageNet network: it has never seen the rows' training images). Each row
starts from that base (or from scratch), trains ``--steps`` steps of batch
``--batch`` with AdamW and a cosine schedule at each learning rate of
``--lrs``, and records eval and test predictions. Rows are written to the
JSON file as they finish; `--rows` picks and orders them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("MORPHHR_MODEL_SIDE_ONLY", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import morphhr_tf  # noqa: E402,F401  (runtime policy)
from morphhr_tf.evaluation.metrics import auc  # noqa: E402
from morphhr_tf.models import build_morphhr, resnet18  # noqa: E402
from morphhr_tf.models.compute import forward_macs  # noqa: E402
from morphhr_tf.models.detail_branch import DETAIL_PREFIX, add_detail_branch  # noqa: E402
from morphhr_tf.models.morphhr import MORPHHR_PREFIX, added_layers  # noqa: E402
from morphhr_tf.synthetic import fine_detail  # noqa: E402
from morphhr_tf.training.onednn_fault import check_pointwise_gradient_fault  # noqa: E402
from morphhr_tf.training.schedule import LayerwiseAdamW, make_learning_rate  # noqa: E402

#: name -> (input "S", "2S" or "4S", initial weights, builder, trunk multiplier)
ROWS = {
    "detector_4S": ("4S", "scratch", "detector", 1.0),
    "resnet18_S": ("S", "base", "resnet18", 1.0),
    "resnet18_2S": ("2S", "base", "resnet18", 1.0),
    "resnet18_4S": ("4S", "base", "resnet18", 1.0),
    "resnet18_scratch_S": ("S", "scratch", "resnet18", 1.0),
    "resnet18_scratch_4S": ("4S", "scratch", "resnet18", 1.0),
    "morphhr_4S": ("4S", "base", "morphhr", 0.1),
    "morphhr_detail_S": ("S", "base", "morphhr_detail", 0.1),
    "morphhr_detail_2S": ("2S", "base", "morphhr_detail", 0.1),
    "morphhr_detail_4S": ("4S", "base", "morphhr_detail", 0.1),
    "morphhr_detail_anti_4S": ("4S", "base", "morphhr_detail_anti", 0.1),
    "morphhr_detail_frozen_4S": ("4S", "base", "morphhr_detail", 0.0),
    "morphhr_detail_trunk1_4S": ("4S", "base", "morphhr_detail", 1.0),
}
#: Area-averaging factor from the full resolution (4S) to each input.
FACTORS = {"S": 4, "2S": 2, "4S": 1}


class Batches(keras.utils.PyDataset):
    """``steps`` shuffled batches (epoch after epoch), with random flips."""

    def __init__(self, x, y, batch, steps, seed, augment=True):
        super().__init__()
        rng = np.random.default_rng(seed)
        order = np.concatenate(
            [rng.permutation(len(x)) for _ in range(steps * batch // len(x) + 1)]
        )
        self.index = order[: steps * batch].reshape(steps, batch)
        self.x, self.y, self.augment = x, y, augment
        self.rng = np.random.default_rng(seed + 1)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        idx = self.index[i]
        xb = self.x[idx]
        if self.augment:
            if self.rng.random() < 0.5:
                xb = xb[:, ::-1]
            if self.rng.random() < 0.5:
                xb = xb[:, :, ::-1]
        return np.ascontiguousarray(xb), self.y[idx].astype(np.float32)[:, None]


def detector(size: int) -> keras.Model:
    """The standalone full-resolution detector (the branch as a network)."""
    from morphhr_tf.models.detail_branch import _detector

    image = keras.Input((size, size, 1), name="image")
    x = _detector(image, (16, 16, 32, 32), "det_", seed=0)
    x = keras.layers.Dense(1, dtype="float32", name="logits")(x)
    out = keras.layers.Activation("sigmoid", dtype="float32", name="predictions")(x)
    return keras.Model(image, out, name="detector")


def build(row: str, sizes: dict, base: keras.Model | None, width: int, seed: int):
    res, init, kind, _ = ROWS[row]
    size = sizes[res]
    if kind == "detector":
        return detector(size)
    if kind == "resnet18":
        model = resnet18((size, size, 1), width=width)
        if init == "base":
            model.set_weights(base.get_weights())
        return model
    model = build_morphhr(base, size, front_channels=8, seed=seed)
    if kind == "morphhr":
        return model
    return add_detail_branch(
        model, init="antithetic" if kind.endswith("anti") else "zeros", seed=seed
    )


def train(model, x, y, *, lr, steps, batch, seed, trunk_multiplier, new_prefixes=()):
    keras.utils.set_random_seed(seed)
    multipliers = dict.fromkeys(added_layers(model, new_prefixes), 1.0)
    opt = LayerwiseAdamW(
        learning_rate=make_learning_rate(
            lr, steps, kind="cosine", warmup_fraction=0.05
        ),
        weight_decay=1e-4,
        lr_multipliers=multipliers,
        default_multiplier=trunk_multiplier,
    )
    if trunk_multiplier == 0.0:  # frozen trunk: no gradient work for it at all
        for layer in model.layers:
            if layer.weights and layer.name not in multipliers:
                layer.trainable = False
    check_pointwise_gradient_fault(model, batch)
    model.compile(optimizer=opt, loss="binary_crossentropy", jit_compile="auto")
    start = time.perf_counter()
    history = model.fit(Batches(x, y, batch, steps, seed), epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return seconds, float(history.history["loss"][-1])


def predict(model, x, batch=64):
    return np.asarray(model.predict(x, batch_size=batch, verbose=0), np.float64)[:, 0]


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str], dict[str, str]]:
    """``(args, rows, row_lrs)``; ``--dry-run`` shrinks ``args`` to tiny sizes."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=256, help="4S, the full resolution")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--train", type=int, default=1200)
    p.add_argument("--eval", type=int, default=400)
    p.add_argument("--test", type=int, default=400)
    p.add_argument("--pretrain", type=int, default=1200)
    p.add_argument("--base-steps", type=int, default=600)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lrs", default="1e-3")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--row-lrs", default="", help="row=lr1/lr2,... overrides --lrs")
    p.add_argument("--precision", default="float32")
    p.add_argument(
        "--base-data",
        choices=["pretrain", "train"],
        default="pretrain",
        help="train the base on the disjoint pretraining pool (a stand-in for "
        "ImageNet) or, as the pipeline's stage 1 does, on the rows' own train split",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, any device")
    args = p.parse_args(argv)
    if args.dry_run:
        args.size, args.train, args.eval, args.test, args.pretrain = 64, 32, 32, 32, 32
        args.steps, args.base_steps, args.width = 3, 3, 4
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    row_lrs = dict(item.split("=") for item in args.row_lrs.split(",") if item)
    if args.k != 4:
        p.error("--k must be 4: the rows are S, 2S and 4S = --size")
    return args, rows, row_lrs


def make_data(args: argparse.Namespace) -> tuple[dict, tuple, dict]:
    """The task's images, area-averaged to each input size, by split.

    Returns:
        ``(data, pretrain, labels)``: ``data[res][split] = (x, y)`` for
        ``res`` in S, 2S, 4S; the base's pretraining pool at S; the eval and
        test labels (``eval_labels``, ``test_labels``, as in the JSON).
    """
    config = fine_detail.FineDetailConfig(size=args.size)
    n = args.train + args.eval + args.test
    images, labels, _ = fine_detail.make_dataset(n, seed=args.seed, config=config)
    pre_x, pre_y, _ = fine_detail.make_dataset(
        args.pretrain, seed=args.seed + 1000, config=config
    )
    split = {
        "train": slice(0, args.train),
        "eval": slice(args.train, args.train + args.eval),
        "test": slice(args.train + args.eval, n),
    }
    data = {
        res: {
            name: (
                fine_detail.area_downsample(images[s], size_k)[..., None],
                labels[s],
            )
            for name, s in split.items()
        }
        for res, size_k in FACTORS.items()
    }
    pre_small = fine_detail.area_downsample(pre_x, args.k)[..., None]
    split_labels = {
        "test_labels": labels[split["test"]].tolist(),
        "eval_labels": labels[split["eval"]].tolist(),
    }
    return data, (pre_small, pre_y), split_labels


def train_base(args: argparse.Namespace, sizes: dict, data: dict, pretrain: tuple):
    """The base ResNet18 at S, on the pretraining pool or (``--base-data
    train``) on the rows' train split; returns it with its JSON summary."""
    keras.utils.set_random_seed(args.seed)  # the base's initial weights too
    base = resnet18((sizes["S"], sizes["S"], 1), width=args.width)
    pre_small, pre_y = data["S"]["train"] if args.base_data == "train" else pretrain
    seconds, loss = train(
        base, pre_small, pre_y, lr=1e-3, steps=args.base_steps, batch=args.batch,
        seed=args.seed, trunk_multiplier=1.0,
    )  # fmt: skip
    summary = {
        "seconds": seconds,
        "loss": loss,
        "eval_auc": auc(data["S"]["eval"][1], predict(base, data["S"]["eval"][0])),
    }
    return base, summary


def run_row(row: str, lr: float, args, sizes: dict, base, data: dict) -> dict:
    """One row at one learning rate: trains it from the base, predicts eval and
    test. An error becomes the entry's ``error`` (the other rows still run)."""
    res, _, _, multiplier = ROWS[row]
    try:
        model = build(row, sizes, base, args.width, args.seed)
        seconds, loss = train(
            model, *data[res]["train"], lr=lr, steps=args.steps,
            batch=args.batch, seed=args.seed, trunk_multiplier=multiplier,
            new_prefixes=(MORPHHR_PREFIX, DETAIL_PREFIX),
        )  # fmt: skip
        ev = predict(model, data[res]["eval"][0])
        te = predict(model, data[res]["test"][0])
        return {
            "row": row, "lr": lr, "seconds": seconds, "loss": loss,
            "size": sizes[res], "params": int(model.count_params()),
            "macs_per_image": forward_macs(model),
            "img_per_s": args.steps * args.batch / seconds,
            "eval_auc": auc(data[res]["eval"][1], ev),
            "test_auc": auc(data[res]["test"][1], te),
            "eval": ev.round(6).tolist(), "test": te.round(6).tolist(),
        }  # fmt: skip
    except Exception as error:  # keep the other rows
        return {"row": row, "lr": lr, "error": repr(error)[:500]}


def main(argv=None) -> int:
    args, rows, row_lrs = parse_args(argv)
    keras.config.set_dtype_policy(args.precision)
    sizes = {res: args.size // f for res, f in FACTORS.items()}
    t0 = time.perf_counter()
    data, pretrain, split_labels = make_data(args)
    result = {
        "args": vars(args),
        "backend": keras.backend.backend(),
        "data_seconds": time.perf_counter() - t0,
        **split_labels,
        "rows": [],
    }
    print(f"[sweep] data in {result['data_seconds']:.1f} s", flush=True)

    def dump():
        with open(args.out, "w") as f:
            json.dump(result, f)

    base, result["base"] = train_base(args, sizes, data, pretrain)
    print(f"[sweep] base {result['base']}", flush=True)
    dump()
    for row in rows:
        for lr in [float(v) for v in row_lrs.get(row, args.lrs).split("/")]:
            entry = run_row(row, lr, args, sizes, base, data)
            result["rows"].append(entry)
            dump()
            shown = {k: v for k, v in entry.items() if k not in ("eval", "test")}
            print(f"[sweep] {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
