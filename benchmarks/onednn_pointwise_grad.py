"""Does this TensorFlow build corrupt memory in a 1x1 strided conv's gradient?

TensorFlow 2.21's oneDNN kernel for the kernel gradient of a 1x1 convolution
with stride 2 (``Conv2DBackpropFilter``, oneDNN's ``jit_1x1`` backward-weights
primitive) corrupts the heap on this project's AVX-512 machines when the
input has fewer than 16 channels and the batch is odd: the process dies
later with ``corrupted size vs. prev_size``, ``free(): invalid next size``,
a segmentation fault, or, now and then, an ``AbortedError`` ("could not
create a primitive descriptor for the reorder primitive"). ResNet18's
shortcut convolutions are such convolutions; with ``width`` below 16 their
first one has fewer than 16 input channels. Full-width models (64) do not
meet it; the tests' width-4 and width-8 models do, at odd batches.

Each configuration runs in fresh processes (a corrupted heap can only be told
by the process dying), pure TensorFlow, no Keras:

    python benchmarks/onednn_pointwise_grad.py
    python benchmarks/onednn_pointwise_grad.py --batches 3 --in-channels 4 \
        --runs 8 --env ONEDNN_MAX_CPU_ISA=AVX2

It prints, per batch and input channel count, how many of ``--runs``
processes died and how (exit status), and writes the rows to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from cli_types import positive_int

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from morphhr_tf.cpu import cpu_flags  # noqa: E402  (no TensorFlow)


def _child(batch: int, in_channels: int, size: int, steps: int) -> int:
    import tensorflow as tf

    tf.random.set_seed(0)
    x = tf.random.normal([batch, size, size, in_channels])
    kernel = tf.Variable(tf.random.normal([1, 1, in_channels, 8]))

    @tf.function
    def kernel_gradient():
        with tf.GradientTape() as tape:
            y = tf.nn.conv2d(x, kernel, 2, "VALID")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, kernel)

    for _ in range(steps):
        gradient = kernel_gradient()
    print(json.dumps({"gradient_sum": float(tf.reduce_sum(gradient))}), flush=True)
    return 0


def _positive_list(text: str) -> list[int]:
    try:
        return [positive_int(v) for v in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers. Received: {text}"
        ) from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=_positive_list, default=[2, 3, 4, 5])
    p.add_argument("--in-channels", type=_positive_list, default=[4, 8, 16])
    p.add_argument(
        "--size", type=positive_int, default=16, help="input rows and columns"
    )
    p.add_argument("--steps", type=positive_int, default=50)
    p.add_argument("--runs", type=positive_int, default=3)
    p.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="set in the child processes (e.g. TF_ENABLE_ONEDNN_OPTS=0)",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=positive_int, default=120, help="seconds per process"
    )
    p.add_argument("--out", default=None, help="JSON file for the rows")
    p.add_argument("--one", help=argparse.SUPPRESS)  # batch:in_channels (child)
    args = p.parse_args(argv)
    if args.one:
        batch, in_channels = (int(v) for v in args.one.split(":"))
        return _child(batch, in_channels, args.size, args.steps)
    bad_env = [e for e in args.env if "=" not in e]
    if bad_env:
        p.error(f"--env takes NAME=VALUE. Received: {bad_env}")
    env = dict(os.environ, **dict(e.split("=", 1) for e in args.env))
    avx512 = sorted(f for f in cpu_flags() if f.startswith("avx512"))
    print(
        f"machine: {platform.machine()}, AVX-512 flags: "
        f"{' '.join(avx512) or 'none'}; child environment: "
        f"{' '.join(args.env) or '(inherited)'}",
        flush=True,
    )
    rows = []
    for batch in args.batches:
        for in_channels in args.in_channels:
            statuses = []
            for _ in range(args.runs):
                cmd = [sys.executable, os.path.abspath(__file__), "--one",
                       f"{batch}:{in_channels}", "--size", str(args.size),
                       "--steps", str(args.steps)]  # fmt: skip
                try:
                    done = subprocess.run(
                        cmd, env=env, capture_output=True, text=True,
                        timeout=args.timeout,
                    )  # fmt: skip
                    ok = done.returncode == 0 and '"gradient_sum"' in done.stdout
                    statuses.append(0 if ok else done.returncode or 1)
                except subprocess.TimeoutExpired:
                    statuses.append("timeout")
            died = sum(1 for s in statuses if s != 0)
            row = {
                "batch": batch, "in_channels": in_channels, "runs": args.runs,
                "died": died, "exit_statuses": statuses,
            }  # fmt: skip
            rows.append(row)
            print(
                f"batch {batch:3d}, {in_channels:3d} input channels: "
                f"{died} of {args.runs} processes died {statuses}",
                flush=True,
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": args.env, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
