"""The fine-detail table from `fine_detail_sweep.py` results, as markdown.

    python benchmarks/fine_detail_report.py sweep.json [more.json ...] --out table.md

For each row the learning rate with the best **eval** AUC is kept (every row
chooses from its own runs of the same grid, same steps and data); the table
gives its test AUC with a 95% stratified-bootstrap CI, DeLong's p against
ResNet18 at S and against the best ResNet18 at 4S, and the forward
multiply-accumulates per image relative to the best ResNet18 at 4S (same
steps and batch for every row, so this is the ratio of training compute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from morphhr_tf.evaluation.metrics import auc_with_ci, delong_test  # noqa: E402


def best_runs(results: list[dict]) -> tuple[dict, np.ndarray]:
    """Per row, the run with the best eval AUC; and the test labels."""
    labels = np.asarray(results[0]["test_labels"])
    best: dict[str, dict] = {}
    for result in results:
        if result["test_labels"] != results[0]["test_labels"]:
            raise ValueError("the result files were made on different test sets")
        for run in result["rows"]:
            if "error" in run:
                continue
            run = dict(
                run, grid=sorted({*best.get(run["row"], {}).get("grid", ()), run["lr"]})
            )
            if run["row"] not in best or run["eval_auc"] > best[run["row"]]["eval_auc"]:
                best[run["row"]] = run
            else:
                best[run["row"]]["grid"] = run["grid"]
    return best, labels


def table(results: list[dict]) -> str:
    best, labels = best_runs(results)
    low = best.get("resnet18_S")
    high = [best[r] for r in ("resnet18_4S", "resnet18_scratch_4S") if r in best]
    top = max(high, key=lambda r: r["eval_auc"]) if high else None
    lines = [
        "| row | input px | lr (eval-chosen from) | eval AUC | test AUC [95% CI] "
        "| DeLong p vs resnet18_S | DeLong p vs best ResNet18 at 4S "
        "| compute vs best ResNet18 at 4S | train img/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in best.items():
        scores = np.asarray(run["test"])
        ci = auc_with_ci(labels, scores)

        def p_vs(ref, run=run, scores=scores):
            if ref is None or ref is run:
                return "-"
            d = delong_test(labels, scores, np.asarray(ref["test"]))
            return f"{d.p_value:.2g} ({d.difference:+.3f})"

        ratio = "-"
        if top and run.get("macs_per_image") and top.get("macs_per_image"):
            ratio = f"{run['macs_per_image'] / top['macs_per_image']:.2f}x"
        grid = "/".join(f"{v:g}" for v in run["grid"])
        lines.append(
            f"| {name} | {run.get('size', '-')} | {run['lr']:g} ({grid}) | {run['eval_auc']:.3f} "
            f"| {ci} | {p_vs(low)} | {p_vs(top)} | {ratio} | {run['img_per_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+")
    p.add_argument("--out")
    args = p.parse_args(argv)
    results = []
    for path in args.results:
        with open(path) as f:
            results.append(json.load(f))
    text = table(results)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
