"""Where the fine-detail task's information lives: a non-learned detector's AUC.

    python benchmarks/fine_detail_oracle.py --size 128 --images 400

Renders the task (:mod:`morphhr_tf.synthetic.fine_detail`) at ``--size`` (4S),
area-averages it to 2S and S, and prints the AUC of
:func:`~morphhr_tf.synthetic.fine_detail.oracle_scores` (high-pass, threshold,
largest speck count in a cluster-sized window) at each resolution, with the
AUC of mean brightness (which must say nothing).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from morphhr_tf.evaluation.metrics import auc_with_ci  # noqa: E402
from morphhr_tf.synthetic import fine_detail  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="4S, the full resolution")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = fine_detail.FineDetailConfig(size=args.size)
    images, labels, _ = fine_detail.make_dataset(
        args.images, seed=args.seed, config=config
    )
    diameter = 2 * config.cluster_radius * config.size
    print(
        f"fine-detail task: {args.images} images ({int(labels.sum())} positive), "
        f"4S = {args.size} px, cluster diameter {diameter:.1f} px at 4S"
    )
    print(f"{'input':>6} {'px':>5}  oracle AUC [95% CI]")
    for name, k in (("4S", 1), ("2S", 2), ("S", 4)):
        small = fine_detail.area_downsample(images, k)
        scores = fine_detail.oracle_scores(small, cluster_diameter=diameter / k)
        print(f"{name:>6} {args.size // k:>5}  {auc_with_ci(labels, scores)}")
    brightness = auc_with_ci(labels, images.mean(axis=(1, 2)))
    print(f"mean brightness at 4S: AUC {brightness}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
