"""The reports' "cases left out" section and ``left_out.csv``: every case
one input had and another did not, or that could not be scored, with why."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable


def left_out_lines(
    data: dict, out_dir: str, kind_of: Callable[[str], str]
) -> list[str]:
    """Writes ``out_dir/left_out.csv`` (``model, key, reason`` per case; a
    previous report's file is removed when nothing is left out) and returns
    the Markdown lines counting the cases per model and ``kind_of(reason)``.

    Args:
        data: ``{model name: {"left_out": [(key, reason), ...], ...}}``.
        out_dir: the report's folder.
        kind_of: the reason's row in the count table.
    """
    listed = [(n, k, r) for n, d in data.items() for k, r in d["left_out"]]
    path = os.path.join(out_dir, "left_out.csv")
    if not listed:
        if os.path.exists(path):  # a previous report's list
            os.remove(path)
        return []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "key", "reason"])
        writer.writerows(listed)
    counts: dict[tuple[str, str], int] = {}
    for name, _, reason in listed:
        kind = kind_of(reason)
        counts[(name, kind)] = counts.get((name, kind), 0) + 1
    lines = ["", "## Cases left out", "", "| model | reason | cases |"]
    lines.append("| --- | --- | --- |")
    lines += [f"| {n} | {r} | {c} |" for (n, r), c in sorted(counts.items())]
    return lines + ["", "Each is listed, with its reason, in `left_out.csv`."]
