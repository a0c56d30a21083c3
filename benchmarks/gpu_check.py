"""Training throughput and peak accelerator memory: ResNet18 against MorphHR.

Backend-agnostic (Keras 3 on JAX, PyTorch or TensorFlow), so it runs on a GPU
machine without TensorFlow; `benchmarks/gpu_check.sh` drives it there. Each
configuration runs in a fresh subprocess, so its peak memory is its own:

    KERAS_BACKEND=jax python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json  # CPU, tiny

Configurations (``--models``): ResNet18 (full width 64) at S; MorphHR-ResNet18
(base at 224 px, 8-channel 2-block front, detail branch as
``--detail-branch``) at S, fitted as the trainer's stage 2 fits it, through the
view that recomputes the front's first block (``morphhr``), and fitted itself
(``morphhr_plain``); for S in ``--sizes`` and batch in ``--batches``, mixed
precision, AdamW, random images; the first ``--warmup`` steps (tracing and
compilation) are not timed.

One process per model and size builds the model once and trains it at each
batch in increasing order (building and compiling are most of a row's wall
time). A row's peak memory is the process's peak after that batch's steps:
the largest batch so far, i.e. its own peak, since the smaller batches'
activations are freed and the weights and optimizer state are shared. The
largest size runs first, so a time limit cuts the cheap rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from cli_types import front_chunks
from peak_memory import peak_memory_mb

os.environ.setdefault("MORPHHR_MODEL_SIDE_ONLY", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(model_kind: str, size: int, batches: list[int], args):
    """Builds one model, trains it at each batch and yields a row per batch."""
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np

    import morphhr_tf  # noqa: F401
    from morphhr_tf.models import build_morphhr, resnet18
    from morphhr_tf.models.rematerialize import DEFAULT_FRONT_CHUNKS, recompute_front

    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    if model_kind == "resnet18":
        model = resnet18((size, size, 1), width=args.width)
    else:
        base = resnet18((args.base_size, args.base_size, 1), width=args.width)
        branch = None if args.detail_branch == "none" else args.detail_branch
        model = build_morphhr(
            base, size, front_channels=8, detail_branch=branch, seed=0
        )
    fitted = model
    if model_kind == "morphhr":
        chunks = args.front_chunks
        fitted = recompute_front(
            model, DEFAULT_FRONT_CHUNKS if chunks is None else chunks
        )
    fitted.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    for batch in sorted(batches):
        x = rng.uniform(0, 1, (batch, size, size, 1)).astype(np.float32)
        y = (rng.random((batch, 1)) < 0.5).astype(np.float32)
        for _ in range(args.warmup):
            fitted.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = fitted.train_on_batch(x, y)
        seconds = time.perf_counter() - start
        peak, kind = peak_memory_mb()
        yield {
            "model": model_kind, "size": size, "batch": batch,
            "img_per_s": args.steps * batch / seconds,
            "step_ms": 1e3 * seconds / args.steps, "peak_mb": peak,
            "memory": kind, "loss": float(np.ravel(loss)[0]),
            "params": int(model.count_params()),
        }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", default="896,224")
    p.add_argument("--batches", default="16,32")
    p.add_argument("--base-size", type=int, default=224)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument(
        "--front-chunks", type=front_chunks, default=None,
        help="slices of the batch MorphHR's front is recomputed in (default: "
        "the trainer's; 1: the first front block, whole batch)",
    )  # fmt: skip
    p.add_argument(
        "--detail-branch",
        default="antithetic",
        choices=["zeros", "antithetic", "none"],
        help="MorphHR's detail branch (the trainer's default: antithetic)",
    )
    p.add_argument(
        "--models",
        default="resnet18,morphhr,morphhr_plain",
        help="comma-separated, of resnet18, morphhr (recomputing view), morphhr_plain",
    )
    p.add_argument(
        "--timeout", type=int, default=300, help="seconds per model and size"
    )
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on any device")
    p.add_argument("--one", help=argparse.SUPPRESS)  # model:size:b1+b2 (child)
    args = p.parse_args(argv)
    if args.dry_run:
        # Even batches: TensorFlow 2.21's oneDNN kernel gradient of a 1x1
        # stride-2 convolution with fewer than 16 input channels (width 4's
        # shortcuts) corrupts the heap at odd batches on AVX-512 machines
        # (benchmarks/onednn_pointwise_grad.py).
        args.sizes, args.batches, args.base_size = "64,32", "2,4", 32
        args.width, args.steps, args.warmup = 4, 2, 1
    if args.one:
        kind, size, batches = args.one.split(":")
        for row in run_one(kind, int(size), [int(b) for b in batches.split("+")], args):
            print(json.dumps(row), flush=True)
        return 0
    results = {"backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "rows": []}
    base_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    batches = sorted(int(b) for b in args.batches.split(","))
    for size in [int(s) for s in args.sizes.split(",")]:
        for kind in args.models.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), *base_argv]
            cmd += ["--one", f"{kind}:{size}:{'+'.join(map(str, batches))}"]
            start = time.perf_counter()
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=args.timeout
                )
                stdout, error = done.stdout, done.stderr[-800:]
                if done.returncode:  # a signal (negative) leaves no traceback
                    error = f"exit status {done.returncode}: {error}"
            except subprocess.TimeoutExpired as e:
                stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout
                stdout, error = stdout or "", f"timeout after {args.timeout} s"
            found = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
            done_batches = {row["batch"] for row in found}
            found += [
                {"model": kind, "size": size, "batch": b, "error": error}
                for b in batches
                if b not in done_batches
            ]
            wall = time.perf_counter() - start
            for row in found:
                row["process_wall_s"] = wall
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    by = {(r["model"], r["size"], r["batch"]): r for r in results["rows"]}
    for (kind, size, batch), row in by.items():
        ref = by.get(("resnet18", size, batch))
        if kind != "resnet18" and ref and "img_per_s" in row and "img_per_s" in ref:
            print(
                f"S={size} batch={batch}: {kind} / ResNet18 throughput "
                f"{row['img_per_s'] / ref['img_per_s']:.2f}x, peak memory "
                f"{row['peak_mb'] / ref['peak_mb']:.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
