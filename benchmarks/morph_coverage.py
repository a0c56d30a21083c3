"""How often `widen` is exact, refused or wrong on keras.applications backbones.

For each backbone (weights=None, randomised normalisation statistics, 64 x 64
inputs, a 10-way linear head) the script widens N randomly chosen conv / dense
layers (nested sub-models included) to twice their width with
`method="net2net"`, and sorts each try into:

- exact: the student's output matches the teacher's to a relative 1e-4;
- refused: `widen` raised a `ValueError` (the blocking layer is printed);
- silent: `widen` returned a model whose output differs (must be 0);
- crashed: any other exception (must be 0).

Usage:

    python benchmarks/morph_coverage.py --layers 20 --seed 0
    python benchmarks/morph_coverage.py --backbones MobileNetV2 --method netmorph
"""

from __future__ import annotations

import argparse
import collections
import re
import time

import keras
import numpy as np

from morphhr_tf.morph import widen
from morphhr_tf.morph.graph import all_layers
from morphhr_tf.morph.testing import randomize_normalization, relative_error

BACKBONES = ("MobileNetV2", "EfficientNetB0", "DenseNet121", "ResNet50", "ConvNeXtTiny")
TOLERANCE = 1e-4
_LINEAR = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.Dense)
_STATS = ("gamma", "beta", "moving_mean", "moving_variance")


def build(name: str, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(
        weights=None,
        input_shape=(64, 64, 3),
        classes=10,
        classifier_activation=None,
    )
    randomize_normalization(model, np.random.default_rng(seed))
    return model


def blocking_layer(message: str) -> str:
    """The layer a refusal names (the last quoted name in the message)."""
    names = re.findall(r"'([^']+)' \(", message)
    return names[-1] if names else message[:80]


def widen_width(layer) -> int:
    config = layer.get_config()
    return config.get("filters", config.get("units"))


def run_backbone(name: str, n_layers: int, seed: int, method: str) -> dict:
    model = build(name, seed)
    rng = np.random.default_rng(seed)
    candidates = [
        layer
        for layer in all_layers(model)
        if type(layer) in _LINEAR or isinstance(layer, _LINEAR)
    ]
    candidates = [c for c in candidates if not isinstance(c, keras.Model)]
    chosen = rng.choice(
        len(candidates), size=min(n_layers, len(candidates)), replace=False
    )
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32) * 50.0 + 120.0
    reference = model(x, training=False)
    counts = collections.Counter()
    refusals = collections.Counter()
    worst = 0.0
    for index in sorted(chosen):
        layer = candidates[index]
        try:
            student = widen(
                model, layer.name, 2 * widen_width(layer), method=method, seed=seed
            )
        except ValueError as error:
            counts["refused"] += 1
            refusals[f"{layer.name} <- {blocking_layer(str(error))}"] += 1
            continue
        except Exception as error:  # noqa: BLE001 - a crash is a figure here
            counts["crashed"] += 1
            refusals[f"{layer.name} CRASH {type(error).__name__}: {error}"[:160]] += 1
            continue
        error = relative_error(student(x, training=False), reference)
        worst = max(worst, error)
        counts["exact" if error <= TOLERANCE else "silent"] += 1
        if error > TOLERANCE:
            refusals[f"{layer.name} SILENT rel={error:.2e}"] += 1
    return {"counts": counts, "refusals": refusals, "worst": worst, "n": len(chosen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="net2net", choices=("net2net", "netmorph"))
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    args = parser.parse_args()
    print(f"widen to 2x width, method={args.method}, relative tolerance {TOLERANCE}")
    print(
        f"{'backbone':<16}{'tried':>6}{'exact':>7}{'refused':>9}{'silent':>8}"
        f"{'crashed':>9}{'exact %':>9}{'worst rel':>11}{'sec':>6}"
    )
    details = []
    for name in args.backbones:
        start = time.time()
        try:
            result = run_backbone(name, args.layers, args.seed, args.method)
        except ValueError as error:
            print(f"{name:<16} refused outright: {error}"[:200])
            continue
        c = result["counts"]
        pct = 100.0 * c["exact"] / max(result["n"], 1)
        print(
            f"{name:<16}{result['n']:>6}{c['exact']:>7}{c['refused']:>9}"
            f"{c['silent']:>8}{c['crashed']:>9}{pct:>8.0f}%{result['worst']:>11.1e}"
            f"{time.time() - start:>6.0f}"
        )
        details.append((name, result["refusals"]))
    for name, refusals in details:
        for what, count in refusals.items():
            print(f"  {name}: {what}" + (f" (x{count})" if count > 1 else ""))


if __name__ == "__main__":
    main()
