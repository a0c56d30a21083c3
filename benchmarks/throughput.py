"""The cost of resolution: training throughput and peak memory of ResNet18 at
S x S against MorphHR at S x S (a thin full-resolution front on a 224 base),
measured in one run, plus achieved GFLOP/s against a measured matmul peak.

    python benchmarks/throughput.py [--sizes 224 448 896] [--batch 4] [--steps 3]
        [--detail-branch antithetic] [--front-chunks 4] [--no-xla-activations]

Three models at each S: ResNet18; MorphHR trained as the trainer's stage 2
trains it, through the view that recomputes the front in the backward pass
(``morphhr_tf.models.rematerialize.recompute_front``: the whole front in
``--front-chunks`` slices of the batch, or with 1 the first block for the
whole batch); and ``morphhr_plain``, the same MorphHR fitted itself, keeping
every activation.
Every configuration runs in a fresh subprocess, so its peak resident memory
(CPU: ``ru_maxrss``; GPU: ``tf.config.experimental.get_memory_info`` peak) is
its own. On the CPU the ratios are also given above an idle process (one
that imported TensorFlow and the package and ran one op, measured in the
same run), i.e. of what the training itself adds. Training FLOPs are
counted from the convolution and dense layers' shapes (forward
multiply-adds x 2, x 3 for forward + backward).
Prints a table and the ratios MorphHR / ResNet18 at each S.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# This tree's package, not an installed one: a copy of the repository measures
# its own code.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import morphhr_tf.runtime  # noqa: E402, F401  (runtime policy before TensorFlow)

from cli_types import front_chunks, non_negative_int  # noqa: E402  (benchmarks/, no TensorFlow)
from peak_memory import peak_memory_mb  # noqa: E402


def _build(args) -> tuple:
    """``(model, what is fitted)``: ``morphhr`` is fitted through the
    trainer's rematerialized view, ``morphhr_plain`` itself."""
    from morphhr_tf.models import build_morphhr, resnet18

    size, channels = args.size, args.channels
    if args.model == "resnet18":
        model = resnet18((size, size, channels), width=args.width)
        return model, model
    base = resnet18((args.base_size, args.base_size, channels), width=args.width)
    branch = None if args.detail_branch == "none" else args.detail_branch
    model = build_morphhr(base, size, detail_branch=branch)
    if args.no_xla_activations:
        from morphhr_tf.layers.p_activation import set_xla_kernels

        set_xla_kernels(model, False)
    if args.model == "morphhr_plain":
        return model, model
    from morphhr_tf.models.rematerialize import recompute_front

    return model, recompute_front(
        model, args.front_chunks, detail_blocks=args.slice_detail_blocks
    )


def worker(args) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from morphhr_tf.models.compute import forward_macs
    from morphhr_tf.training.onednn_fault import check_pointwise_gradient_fault

    if args.inter_op_threads:  # before the first op starts TensorFlow's pools
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    inter_op = tf.config.threading.get_inter_op_parallelism_threads()
    if args.model == "idle":
        (tf.constant(np.ones((2, 2), "float32")) * 2.0).numpy()
        peak, what = peak_memory_mb()
        return {
            "model": "idle",
            "size": 0,
            "peak_mb": peak,
            "memory_kind": what,
            "inter_op_threads": inter_op,
        }
    model, fitted = _build(args)
    check_pointwise_gradient_fault(fitted, args.batch)
    fitted.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.BinaryCrossentropy(),
        jit_compile=args.jit,
    )
    rng = np.random.default_rng(0)
    x = tf.constant(
        rng.uniform(size=(args.batch, args.size, args.size, args.channels)).astype(
            "float32"
        )
    )
    y = tf.constant(rng.integers(0, 2, size=(args.batch, 1)).astype("float32"))
    fitted.train_on_batch(x, y)  # trace + warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = fitted.train_on_batch(x, y)
    elapsed = time.perf_counter() - start
    peak, what = peak_memory_mb()
    flops = 3.0 * 2.0 * forward_macs(model)  # 2 FLOPs per MAC, x3 for training
    images_per_s = args.batch * args.steps / elapsed
    return {
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "img_per_s": images_per_s,
        "peak_mb": peak,
        "memory_kind": what,
        "train_gflop_per_img": flops / 1e9,
        "achieved_gflops": flops * images_per_s / 1e9,
        "params": int(model.count_params()),
        "loss_finite": bool(np.isfinite(float(np.asarray(loss).ravel()[0]))),
        "inter_op_threads": inter_op,
    }


def matmul_peak_gflops(precision: str, n: int = 2048, seconds: float = 2.0) -> float:
    """Measured dense matmul GFLOP/s in the compute dtype of the policy."""
    import tensorflow as tf

    dtype = (
        tf.bfloat16
        if "bfloat16" in precision
        else (tf.float16 if "float16" in precision else tf.float32)
    )
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    mm = tf.function(lambda m: tf.matmul(m, m))
    mm(a).numpy()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mm(a).numpy()
        reps += 1
    return 2.0 * n**3 * reps / (time.perf_counter() - start) / 1e9


def input_pipeline_img_per_s(
    tfrecords: str, size: int, batch: int, batches: int
) -> float:
    """Decoded, resized, augmented images/s from gzip TFRecords (training mode)."""
    from morphhr_tf.training.input_pipeline import make_dataset

    ds = make_dataset(
        tfrecords, resolution=size, batch_size=batch, training=True,
        balance="sample", augment=True, seed=0,
    )  # fmt: skip
    it = iter(ds)
    next(it)  # build the pipeline, fill the prefetch buffer once
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def _synthetic_tfrecords(size: int, tmp: str) -> str:
    """A small synthetic set ingested at `size` px under `tmp`; its train glob."""
    from morphhr_tf.data.ingest import run_ingest
    from morphhr_tf.synthetic.cbis_ddsm import generate

    generate(os.path.join(tmp, "raw"), patients=6, seed=0, rows=1024)
    run_ingest(
        "cbis_ddsm", os.path.join(tmp, "raw"), os.path.join(tmp, "tfr"),
        image_size=size, eval_fraction=0.0, progress=False,
    )  # fmt: skip
    return os.path.join(tmp, "tfr", "Split-*", "*.gz")


def _auto_precision() -> str:
    from morphhr_tf.training.precision import select_precision

    return select_precision("auto")


def parse_args(argv=None) -> argparse.Namespace:
    """The options, with ``--precision auto`` resolved."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896])
    p.add_argument("--base-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--precision", default="auto")
    p.add_argument(
        "--jit",
        action="store_true",
        help="compile with XLA (jit_compile=True); the trainer does not on a CPU",
    )
    p.add_argument(
        "--front-chunks",
        type=front_chunks,
        default=None,
        help="slices of the batch the view recomputes the front in "
        "(default: the trainer's, morphhr_tf.models.rematerialize."
        "DEFAULT_FRONT_CHUNKS; 1: the first front block, whole batch)",
    )
    p.add_argument(
        "--no-xla-activations",
        action="store_true",
        help="train MorphHR's P-activations with TensorFlow's ops instead of "
        "XLA kernels (the trainer's xla_activations=false)",
    )
    p.add_argument(
        "--slice-detail-blocks",
        action=argparse.BooleanOptionalAction,
        default=True,  # TrainingConfig.slice_detail_blocks (a test checks)
        help="the view trains the detail branch's full-resolution blocks "
        "keeping only pooled tensors (default: the trainer's "
        "slice_detail_blocks, on)",
    )
    p.add_argument(
        "--detail-branch",
        default="none",
        choices=("none", "zeros", "antithetic"),
        help="MorphHR's detail branch (the trainer's default is antithetic)",
    )
    p.add_argument(
        "--tfrecords",
        default=None,
        help="gzip TFRecord glob for the input-pipeline measurement "
        "(default: a small synthetic set ingested at the largest size)",
    )
    p.add_argument("--input-batches", type=int, default=20)
    p.add_argument(
        "--inter-op-threads",
        type=non_negative_int,
        default=0,
        help="TensorFlow's inter-op threads in every measured process (0: "
        "TensorFlow's choice; 1 runs one op at a time)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="resnet18", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision == "auto":
        args.precision = _auto_precision()
    if args.front_chunks is None:
        from morphhr_tf.models.rematerialize import DEFAULT_FRONT_CHUNKS

        args.front_chunks = DEFAULT_FRONT_CHUNKS
    return args


def measure(args: argparse.Namespace, kind: str, size: int) -> dict:
    """One configuration's :func:`worker` row, in a fresh subprocess; a row
    with ``error`` (the last lines of its stderr) when it fails."""
    cmd = [
        sys.executable, os.path.abspath(__file__), "--worker",
        "--model", kind, "--size", str(size),
        "--base-size", str(args.base_size), "--batch", str(args.batch),
        "--steps", str(args.steps), "--width", str(args.width),
        "--channels", str(args.channels), "--precision", args.precision,
        *(["--jit"] if args.jit else []),
        "--detail-branch", args.detail_branch,
        "--front-chunks", str(args.front_chunks),
        "--slice-detail-blocks" if args.slice_detail_blocks else "--no-slice-detail-blocks",
        *(["--no-xla-activations"] if args.no_xla_activations else []),
        "--inter-op-threads", str(args.inter_op_threads),
    ]  # fmt: skip
    what = "the idle process" if kind == "idle" else f"{kind} at {size} px"
    print(f"measuring {what} ...", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next(
        (ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None
    )
    if out.returncode != 0 or line is None:
        tail = (out.stderr or "").strip().splitlines()[-3:]
        return {"model": kind, "size": size, "error": " | ".join(tail)}
    return json.loads(line[len("RESULT ") :])


def print_table(args: argparse.Namespace, rows: list[dict], peak: float) -> dict:
    """Prints the measurements; returns the successful rows by (model, size)."""
    print(
        f"\nprecision={args.precision} batch={args.batch} width={args.width} "
        f"channels={args.channels} base={args.base_size} steps={args.steps} "
        f"detail_branch={args.detail_branch} front_chunks={args.front_chunks} "
        f"xla_activations={not args.no_xla_activations} "
        f"slice_detail_blocks={args.slice_detail_blocks} "
        f"jit_compile={args.jit} inter_op_threads={args.inter_op_threads}; "
        f"matmul peak {peak:.1f} GFLOP/s"
    )
    header = f"{'model':<14} {'S':>5} {'img/s':>8} {'peak MB':>9} {'GFLOP/img':>10} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    by = {}
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<14} {r['size']:>5}  failed: {r['error']}")
            continue
        by[(r["model"], r["size"])] = r
        print(
            f"{r['model']:<14} {r['size']:>5} {r['img_per_s']:>8.2f} {r['peak_mb']:>9.0f} "
            f"{r['train_gflop_per_img']:>10.2f} {r['achieved_gflops']:>8.1f} "
            f"{100 * r['achieved_gflops'] / peak:>6.1f}%"
        )
    return by


def _ratio(a: dict, b: dict, idle_mb: float | None) -> str:
    """Throughput and peak memory of row ``a`` over row ``b`` (and above the
    idle process, when its peak is known)."""
    line = (
        f"throughput x{a['img_per_s'] / b['img_per_s']:.2f}, "
        f"peak memory x{a['peak_mb'] / b['peak_mb']:.2f} ({a['memory_kind']})"
    )
    if idle_mb is not None:
        above_a, above_b = a["peak_mb"] - idle_mb, b["peak_mb"] - idle_mb
        line += (
            f", above idle x{above_a / above_b:.2f} ({above_a:.0f} / {above_b:.0f} MB)"
        )
    return line


def print_ratios(sizes: list[int], by: dict, idle: dict | None) -> None:
    """At each S: MorphHR / ResNet18 and the recomputing view / MorphHR fitted
    itself, throughput and peak memory (on the CPU also above the idle
    process)."""
    idle_mb = idle["peak_mb"] if idle and idle["memory_kind"] == "peak RSS" else None
    if idle_mb is not None:
        print(f"\nidle process: peak RSS {idle_mb:.0f} MB")
    for title, kinds in (
        ("MorphHR / ResNet18 at the same S", ("morphhr", "resnet18")),
        (
            "the recomputing view (morphhr / morphhr_plain)",
            ("morphhr", "morphhr_plain"),
        ),
    ):
        print(f"\nratios {title}:")
        for size in sizes:
            a, b = by.get((kinds[0], size)), by.get((kinds[1], size))
            if a and b:
                print(f"  S={size}: {_ratio(a, b, idle_mb)}")


def print_input_pipeline(args: argparse.Namespace, rows: list[dict]) -> None:
    """The input pipeline's images/s at each S against the fastest model's."""
    print("\ninput pipeline (decode + area resize + augment) vs training consumption:")
    with tempfile.TemporaryDirectory(prefix="morphhr_throughput_") as tmp:
        tfrecords = args.tfrecords or _synthetic_tfrecords(max(args.sizes), tmp)
        _print_input_rates(args, rows, tfrecords)


def _print_input_rates(args: argparse.Namespace, rows: list[dict], tfrecords: str):
    for size in args.sizes:
        supply = input_pipeline_img_per_s(
            tfrecords, size, args.batch, args.input_batches
        )
        demand = max(
            (
                r["img_per_s"]
                for r in rows
                if r.get("size") == size and "img_per_s" in r
            ),
            default=float("nan"),
        )
        print(
            f"  S={size}: input {supply:.1f} img/s, fastest model consumes "
            f"{demand:.2f} img/s -> input / consumption x{supply / demand:.1f}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    t0 = time.perf_counter()
    idle = measure(args, "idle", 0)
    rows = [
        measure(args, kind, size)
        for size in args.sizes
        for kind in ("resnet18", "morphhr", "morphhr_plain")
    ]
    peak = matmul_peak_gflops(args.precision)
    by = print_table(args, rows, peak)
    print_ratios(args.sizes, by, None if "error" in idle else idle)
    print_input_pipeline(args, rows)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
