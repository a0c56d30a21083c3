"""CPU use and training throughput of the demo (a script, not a test).

Trains the demo's configuration (``pipelines/configs.py`` ``PROFILES["cpu"]``:
the ``TrainingConfig`` defaults, stored images of 256 px) on a small synthetic
ingest, through ``morphhr_tf.training.trainer.train`` (stage 1, the base at
128 px, then stage 2, MorphHR at 256 px), ``--steps`` steps per stage, and
prints for each stage, over its steps after the first tenth (tracing done)
and before validation: img/s, the process's CPU use (user + system time over
wall time: 100% is one core busy; on a shared machine it is capped by the
share the scheduler gives) and the mean number of runnable threads (running
or waiting for a core, sampled every 20 ms: how many cores the training
could keep busy, whatever the load).

Each variant runs in its own process (thread pools are fixed when TensorFlow
starts), one after the other in one invocation, so compare the ratios it
prints. A variant applies a candidate fix locally, without editing the
package:

- ``baseline``: the package as it is;
- ``threads=I,J``: ``tf.config.threading`` intra-op ``I``, inter-op ``J``
  threads (0: TensorFlow's default);
- ``spe=K``: ``model.compile(..., steps_per_execution=K)`` (K steps per
  call into the compiled function: less host-side Python per step);
- ``jit``: ``model.compile(..., jit_compile=True)`` (XLA fuses the small ops);
- ``remat=0``: stage 2 fits MorphHR itself, not the view that recomputes the
  front (``rematerialize_front=False``);
- ``chunks=K``: the view recomputes the front in K slices of the batch
  (``front_recompute_chunks``; 1: the first front block, whole batch);
- ``xla=0``: the P-activations train as TensorFlow's ops, not XLA kernels
  (``xla_activations=False``);
- ``branch=B``: the detail branch ``B`` (``none``, ``zeros`` or
  ``antithetic``; ``detail_branch``);
- ``replicas=N``: the CPU split into N logical devices and
  ``strategy="mirrored"`` (data parallel: N model replicas run at once, each
  on ``batch_size / N`` images);
- several joined with ``+``, e.g. ``spe=8+jit``.

Usage::

    .venv/bin/python benchmarks/demo_cpu.py [--steps 100] [--patients 40]
        [--variants baseline spe=8 jit spe=8+jit]

Results: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_VARIANTS = ("baseline", "spe=8", "jit", "spe=8+jit")


def parse_variant(text: str) -> dict:
    """``"spe=8+jit"`` -> ``{"spe": 8, "jit": True}``.

    Raises:
        ValueError: for an unknown part.
    """
    out: dict = {}
    for part in filter(None, text.split("+")):
        key, _, value = part.partition("=")
        if key == "baseline":
            continue
        if key == "jit" and not value:
            out["jit"] = True
        elif key == "spe" and value.isdigit() and int(value) >= 1:
            out["spe"] = int(value)
        elif key == "replicas" and value.isdigit() and int(value) >= 1:
            out["replicas"] = int(value)
        elif key == "remat" and value in ("0", "1"):
            out["remat"] = value == "1"
        elif key == "chunks" and value.isdigit() and int(value) > 0:
            out["chunks"] = int(value)
        elif key == "xla" and value in ("0", "1"):
            out["xla"] = value == "1"
        elif key == "branch" and value in ("none", "zeros", "antithetic"):
            out["branch"] = value
        elif key == "threads" and len(value.split(",")) == 2:
            out["threads"] = tuple(int(v) for v in value.split(","))
        else:
            raise ValueError(
                "variant parts are baseline, jit, spe=K, replicas=N, remat=0|1, "
                "chunks=K, xla=0|1, branch=none|zeros|antithetic or threads=I,J. "
                f"Received: {part!r}"
            )
    return out


def make_data(folder: str, patients: int) -> str:
    """A synthetic ingest as the demo makes it (512-row DICOMs, 256 px)."""
    from morphhr_tf.data.ingest import run_ingest
    from morphhr_tf.synthetic.cbis_ddsm import generate
    from pipelines.configs import PROFILES

    profile = PROFILES["cpu"]
    root = os.path.join(folder, "cbis")
    generate(root, patients=patients, seed=0, rows=profile.synthetic_rows)
    out = os.path.join(folder, "examples")
    run_ingest(
        "cbis_ddsm",
        root,
        out,
        image_size=profile.ingest.image_size,
        eval_fraction=profile.ingest.eval_fraction,
        progress=False,
    )
    return out


def _patch_compile(variant: dict) -> None:
    """Makes every ``keras.Model.compile`` use the variant's options."""
    import keras

    extra = {}
    if "spe" in variant:
        extra["steps_per_execution"] = variant["spe"]
    if variant.get("jit"):
        extra["jit_compile"] = True
    if not extra:
        return
    original = keras.Model.compile

    def compile_(self, *args, **kwargs):
        return original(self, *args, **{**kwargs, **extra})

    keras.Model.compile = compile_


def run_variant(data: str, steps: int, variant: dict) -> dict:
    """Trains both stages under ``variant``; returns the per-stage figures."""
    import psutil
    import tensorflow as tf

    if "threads" in variant:
        intra, inter = variant["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if "replicas" in variant:
        cpu = tf.config.list_physical_devices("CPU")[0]
        logical = [tf.config.LogicalDeviceConfiguration()] * variant["replicas"]
        tf.config.set_logical_device_configuration(cpu, logical)
    _patch_compile(variant)
    from table_protocol import split_glob

    from morphhr_tf.training import stages, trainer
    from morphhr_tf.training.strategy import select_strategy
    from pipelines.configs import PROFILES

    options = {
        "remat": "rematerialize_front",
        "chunks": "front_recompute_chunks",
        "xla": "xla_activations",
        "branch": "detail_branch",
    }
    config = dataclasses.replace(
        PROFILES["cpu"].training,
        base_steps=steps,
        epochs=1,
        **{field: variant[key] for key, field in options.items() if key in variant},
    )
    proc, figures = psutil.Process(), []
    fit = stages.fit

    def measured_fit(model, *args, **kwargs):
        probe = _Probe(proc, warmup=max(1, kwargs["steps"] // 10))
        model_fit = model.fit
        model.fit = lambda *a, **kw: model_fit(
            *a, **{**kw, "callbacks": [*kw.get("callbacks", []), probe]}
        )
        history = fit(model, *args, **kwargs)
        figures.append(
            {"input_px": int(model.inputs[0].shape[1]), **probe.figures(config)}
        )
        return history

    stages.fit = measured_fit
    files = lambda split: [split_glob(data, split)]  # noqa: E731
    with tempfile.TemporaryDirectory() as logs:
        trainer.train(
            config,
            train_files=files("train"),
            eval_files=files("eval"),
            steps=steps,
            log_dir=logs,
            strategy=select_strategy(
                "mirrored" if "replicas" in variant else config.strategy
            ),
        )
    return {"stages": figures, "threads": _threads(tf)}


def _runnable_threads(own: int) -> int:
    """This process's threads that are running or waiting for a core
    (state ``R`` in ``/proc``), the sampling thread ``own`` left out: the
    cores the process could use, whatever other processes take."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == b"R" and int(tid) != own
    return count


class _Probe:
    """A Keras callback: wall and CPU time between the end of step
    ``warmup`` (tracing and the first steps done) and the last step's end
    (before validation), and the mean number of runnable threads sampled
    every 20 ms in between (the demand for cores, which the machine's load
    does not change, unlike the CPU share)."""

    def __new__(cls, proc, warmup):
        import threading

        import keras

        class Probe(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.marks, self.samples = [], []
                self.stop = threading.Event()

            def _sample(self):
                own = threading.get_native_id()
                while not self.stop.wait(0.02):
                    self.samples.append(_runnable_threads(own))

            def on_train_batch_end(self, batch, logs=None):
                if batch + 1 < warmup:
                    return
                mark = (batch + 1, time.perf_counter(), sum(proc.cpu_times()[:2]))
                self.marks[1:] = [mark]
                if len(self.marks) == 1:  # the first mark: start sampling
                    threading.Thread(target=self._sample, daemon=True).start()

            def on_train_end(self, logs=None):
                self.stop.set()

            def figures(self, config):
                (s0, t0, c0), (s1, t1, c1) = self.marks[0], self.marks[-1]
                wall = t1 - t0
                n = max(1, len(self.samples))
                return {
                    "steps": s1 - s0,
                    "img_per_s": round((s1 - s0) * config.batch_size / wall, 2),
                    "cpu_percent": round(100 * (c1 - c0) / wall),
                    "runnable": round(sum(self.samples) / n, 2),
                }

        return Probe()


def _threads(tf) -> str:
    return (
        f"intra {tf.config.threading.get_intra_op_parallelism_threads()}, "
        f"inter {tf.config.threading.get_inter_op_parallelism_threads()}"
    )


def _child(args) -> int:
    import morphhr_tf  # noqa: F401  (runtime policy first)

    result = run_variant(args.data, args.steps, parse_variant(args.child))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _run_child(data: str, steps: int, name: str) -> dict:
    cmd = [sys.executable, __file__, "--data", data, "--steps", str(steps)]
    start = time.perf_counter()
    done = subprocess.run(
        [*cmd, "--child", name], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(f"variant {name!r} failed:\n{tail}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per stage")
    parser.add_argument("--patients", type=int, default=40, help="4 images each")
    parser.add_argument("--data", help="an existing ingest (else synthetic)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.child is not None:
        return _child(args)
    for name in args.variants:
        parse_variant(name)  # fail before any work
    os.environ.setdefault("MORPHHR_SALT", "benchmark-salt")
    with tempfile.TemporaryDirectory(prefix="morphhr_demo_cpu_") as tmp:
        data = args.data or make_data(tmp, args.patients)
        print(f"cpus: {os.cpu_count()}  steps per stage: {args.steps}")
        base = None
        for name in args.variants:
            result = _run_child(data, args.steps, name)
            for i, stage in enumerate(result["stages"], 1):
                rate = stage["img_per_s"]
                base = base or {}
                ref = base.setdefault(i, rate)
                print(
                    f"{name:>14}  stage {i} ({stage['input_px']} px): "
                    f"{rate:7.1f} img/s ({rate / ref:4.2f}x)  "
                    f"CPU {stage['cpu_percent']:3d}%  runnable threads "
                    f"{stage['runnable']:4.2f}  [{result['threads']}]"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
