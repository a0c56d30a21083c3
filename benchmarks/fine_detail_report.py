"""The fine-detail table from `fine_detail_sweep.py` results, as markdown.

    python benchmarks/fine_detail_report.py sweep.json [more.json ...] --out table.md
    python benchmarks/fine_detail_report.py old.json new.json --keep-apart

Several files pool their runs of a row when they hold different learning
rates of it (a grid run in parts). A row run at the same rate in two files
(e.g. the same row name built by different code) is an error unless
``--keep-apart``, which names each file's rows ``row@file`` where the name
occurs in more than one file.

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


def best_runs(
    results: list[dict], names: list[str] | None = None
) -> tuple[dict, np.ndarray]:
    """Per row, the run with the best eval AUC; and the test labels.

    Args:
        results: the sweep files' contents.
        names: one name per file to keep its rows apart from other files'
            rows of the same name (``row@name``); None pools them.

    Raises:
        ValueError: on files of different test sets, or on a row run at the
            same learning rate in two files that are pooled.
    """
    labels = np.asarray(results[0]["test_labels"])
    counts: dict[str, int] = {}
    for result in results:
        for row in {run["row"] for run in result["rows"]}:
            counts[row] = counts.get(row, 0) + 1
    best: dict[str, dict] = {}
    seen: dict[tuple[str, float], int] = {}
    for index, result in enumerate(results):
        if result["test_labels"] != results[0]["test_labels"]:
            raise ValueError("the result files were made on different test sets")
        for run in result["rows"]:
            if "error" in run:
                continue
            name = run["row"]
            if names is not None and counts[name] > 1:
                name = f"{name}@{names[index]}"
            if seen.setdefault((name, run["lr"]), index) != index:
                raise ValueError(
                    f"row {name!r} was run at lr {run['lr']:g} in result files "
                    f"{seen[name, run['lr']] + 1} and {index + 1}; pass "
                    "--keep-apart to report each file's runs as their own row"
                )
            run = dict(
                run,
                row=name,
                grid=sorted({*best.get(name, {}).get("grid", ()), run["lr"]}),
            )
            if name not in best or run["eval_auc"] > best[name]["eval_auc"]:
                best[name] = run
            else:
                best[name]["grid"] = run["grid"]
    return best, labels


def table(results: list[dict], names: list[str] | None = None) -> str:
    best, labels = best_runs(results, names)
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
    p.add_argument(
        "--keep-apart",
        action="store_true",
        help="report a row that occurs in several files once per file (row@file)",
    )
    args = p.parse_args(argv)
    results = []
    for path in args.results:
        with open(path) as f:
            results.append(json.load(f))
    names = None
    if args.keep_apart:
        names = [os.path.splitext(os.path.basename(path))[0] for path in args.results]
    text = table(results, names)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
