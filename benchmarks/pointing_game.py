"""Do the saliency maps point at the lesion? ResNet18 at S against MorphHR at 4S.

    python benchmarks/pointing_game.py --out docs/pointing_game/results.json
    python benchmarks/pointing_game.py --smoke --out /tmp/pg.json   # a minute

Protocol:

1. A synthetic CBIS-DDSM tree with the fine-detail signal
   (``morphhr_tf.synthetic.cbis_ddsm.generate``) is ingested at 4S
   (``run_ingest``: official train/test split by patient, eval carved from
   train).
2. The package's trainer trains stage 1, a ResNet18 base at S
   (``trainer.train_base``), morphs it (``trainer.morph``) and trains stage 2,
   MorphHR at 4S (``trainer.train_morphhr``), with a ``TrainingConfig``.
   "ResNet18 at S" below is that stage-1 base.
3. Ground truth, never drawn into the images: the lesions of every malignant
   test image, found again by replaying the generator's placement with the
   same seed (``morphhr_tf.evaluation.lesion_masks``): each malignant finding's
   ROI mask and the fine-detail speck cluster's box, moved through ingest's
   crop, flip and resizes into each model's input pixels.
4. Maps (``morphhr_tf.evaluation.saliency``): Grad-CAM on the trunk's last
   feature map for both models, Grad-CAM on MorphHR's full-resolution front,
   and smoothed gradient x input for both (sigma 2 px at 4S, 0.5 px at S);
   as a control that needs no model, the smoothed image itself
   ("brightness": does the map only find the brightest spot?).
5. Metrics (``morphhr_tf.evaluation.pointing_game``) at each model's own input
   resolution: pointing-game hit rate at tolerance 0 and at one S pixel (4 px
   at 4S), the map mass inside the lesion, and the random baseline (a point
   uniform over the breast; exact area fraction), each with a 95% bootstrap
   CI over the images.

Prints progress lines and a table; writes the JSON to ``--out`` and example
overlays (PNG) into ``--figures``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import morphhr_tf.runtime  # noqa: E402,F401  (runtime policy before TensorFlow)

from table_protocol import split_glob  # noqa: E402


def _log(msg: str) -> None:
    print(f"[pointing_game {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the results JSON")
    p.add_argument("--figures", default="", help="folder for example overlay PNGs")
    p.add_argument("--work", default="/tmp/morphhr_pointing_game")
    p.add_argument("--patients", type=int, default=240)
    p.add_argument("--rows", type=int, default=512, help="synthetic matrix height")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--size", type=int, default=64, help="S; MorphHR takes 4S")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--base-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--examples", type=int, default=2, help="images with overlays")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a minute")
    args = p.parse_args(argv)
    if args.smoke:
        args.patients, args.rows, args.size, args.width = 24, 256, 32, 4
        args.base_steps, args.steps, args.batch = 5, 5, 8
        args.test_fraction = 0.4
    return args


def prepare_data(args) -> str:
    """Generates and ingests the synthetic set; returns the TFRecord folder."""
    from morphhr_tf.data.ingest import run_ingest
    from morphhr_tf.synthetic.cbis_ddsm import generate

    raw, data = (
        os.path.join(args.work, "synthetic"),
        os.path.join(args.work, "tfrecords"),
    )
    _log(f"generating {args.patients} synthetic patients ({args.rows} rows)")
    generate(
        raw, patients=args.patients, seed=args.seed, rows=args.rows,
        fine_detail=True, test_fraction=args.test_fraction,
    )  # fmt: skip
    _log(f"ingesting at {args.size * args.k} px")
    summary = run_ingest(
        "cbis_ddsm", raw, data, image_size=args.size * args.k, num_workers=2,
        eval_fraction=0.2, progress=False,
        private_dir=os.path.join(args.work, "private"),
    )  # fmt: skip
    _log(f"ingested: {json.dumps(summary.get('splits', summary))[:300]}")
    return data


def train_models(args, data: str):
    """Stage 1 (ResNet18 at S) and stage 2 (MorphHR at 4S) with the trainer."""
    import keras

    from morphhr_tf.training import trainer
    from morphhr_tf.training.config import TrainingConfig
    from morphhr_tf.training.precision import select_precision
    from morphhr_tf.training.stages import make_datasets, read_splits
    from morphhr_tf.training.strategy import select_strategy

    config = TrainingConfig(
        model="morphhr", base_resolution=args.size, resolution=args.size * args.k,
        width=args.width, base_steps=args.base_steps, batch_size=args.batch,
        seed=args.seed, precision="auto",
    )  # fmt: skip
    policy = select_precision(config.precision)
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(config.seed)
    strategy = select_strategy("auto")
    logs = os.path.join(args.work, "logs")
    files = {s: [split_glob(data, s)] for s in ("train", "eval")}
    splits, _ = read_splits(config, strategy, files["train"], files["eval"])
    t0 = time.perf_counter()
    base, base_eval, s1 = trainer.train_base(
        config, splits, strategy, steps=args.steps, log_dir=logs
    )
    _log(f"stage 1 done in {time.perf_counter() - t0:.0f} s ({policy})")
    datasets = make_datasets(splits, config.resolution, config, strategy)
    model, front, check = trainer.morph(base, config, splits, strategy)
    s2, _ = trainer.train_morphhr(
        model, front, datasets, base_eval, config, strategy, steps=args.steps,
        log_dir=logs,
    )  # fmt: skip
    _log(f"stage 2 done, {time.perf_counter() - t0:.0f} s in all")
    summary = {
        "precision": policy,
        "eval_auc_resnet18_S": s1["auc_base"],
        "eval_auc_morphhr_4S": s2["auc_final"],
        "max_abs_diff_at_morph": check["max_abs_diff_at_morph"],
    }
    return base, model, summary


def load_positives(args, resolutions: dict[str, int]):
    """The malignant test images with their lesion and breast masks."""
    import numpy as np

    from morphhr_tf.data.adapters.cbis_ddsm import cbis_ddsm
    from morphhr_tf.evaluation.lesion_masks import load_example, synthetic_cbis_lesions

    lesions = synthetic_cbis_lesions(
        seed=args.seed, patients=args.patients, rows=args.rows, fine_detail=True,
        test_fraction=args.test_fraction, split="Test",
    )  # fmt: skip
    records = {
        r.image_id: r for r in cbis_ddsm(os.path.join(args.work, "synthetic")).records
    }
    out = {name: {"image": [], "lesion": [], "breast": []} for name in resolutions}
    kinds = []
    for image_id in sorted(lesions):
        record = records[image_id]
        masks = [les.mask for les in lesions[image_id] if les.malignant]
        kinds.append("+".join(les.kind for les in lesions[image_id] if les.malignant))
        for name, res in resolutions.items():
            example = load_example(
                record.path, record.laterality, masks,
                image_size=args.size * args.k, resolution=res,
            )  # fmt: skip
            for key, value in zip(("image", "lesion", "breast"), example):
                out[name][key].append(value)
    return {n: {k: np.stack(v) for k, v in d.items()} for n, d in out.items()}, kinds


def brightness(images, sigma: float):
    """The control "map": the smoothed image itself (where is it brightest?)."""
    import numpy as np
    from scipy import ndimage

    from morphhr_tf.evaluation.saliency import normalize_maps

    return normalize_maps(np.stack([ndimage.gaussian_filter(i, sigma) for i in images]))


def saliency_maps(base, model, data: dict, k: int) -> dict:
    """``{(model, method): maps}`` on the positive test images, and the
    brightness control at each input size."""
    from morphhr_tf.evaluation import saliency as S

    small, full = data["resnet18_S"]["image"], data["morphhr_4S"]["image"]
    front = S.front_feature_layer(model)
    return {
        ("resnet18_S", "brightness"): brightness(small, 2.0 / k),
        ("morphhr_4S", "brightness"): brightness(full, 2.0),
        ("resnet18_S", "grad_cam_trunk"): S.grad_cam(base, small),
        ("resnet18_S", "gradient_x_input"): S.gradient_x_input(
            base, small, sigma=2.0 / k
        ),
        ("morphhr_4S", "grad_cam_trunk"): S.grad_cam(model, full),
        ("morphhr_4S", "grad_cam_front"): S.grad_cam(model, full, layer_name=front),
        ("morphhr_4S", "gradient_x_input"): S.gradient_x_input(model, full, sigma=2.0),
    }


def score(maps: dict, data: dict, k: int) -> list[dict]:
    """Pointing-game rows at tolerance 0 and one S pixel."""
    from morphhr_tf.evaluation.pointing_game import pointing_game

    rows = []
    for (name, method), m in maps.items():
        scale = 1 if name.endswith("_S") else k
        for tol_s in (0, 1):
            result = pointing_game(
                m, data[name]["lesion"], regions=data[name]["breast"],
                tolerance=tol_s * scale,
            )  # fmt: skip
            result.update(model=name, method=method, tolerance_s_px=tol_s)
            rows.append(result)
    return rows


def write_examples(args, maps, data, count: int) -> list[str]:
    """Overlays of the first ``count`` positives; PNGs copied to ``--figures``."""
    from morphhr_tf.evaluation.overlays import write_heatmaps

    heat_dir = os.path.join(args.work, "heatmaps")
    pngs = []
    for (name, method), m in maps.items():
        d = data[name]
        if method == "brightness":
            continue
        names = [f"test{i}_{name}_{method}" for i in range(min(count, len(m)))]
        written = write_heatmaps(
            m[: len(names)], d["image"][: len(names)], names, heat_dir,
            outlines=d["lesion"][: len(names)],
            titles=[f"{n} (lesion outlined)" for n in names],
        )  # fmt: skip
        pngs += [p for p in written if p.endswith(".png")]
    if args.figures:
        os.makedirs(args.figures, exist_ok=True)
        for p in pngs:
            shutil.copy(p, args.figures)
    return pngs


def print_table(rows: list[dict]) -> None:
    def fmt(v):
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"

    print(
        f"{'model':<12} {'method':<17} {'tol':>3} {'hit rate':>22} "
        f"{'random (breast)':>22} {'mass inside':>22} {'random mass':>22}"
    )
    for r in rows:
        print(
            f"{r['model']:<12} {r['method']:<17} {r['tolerance_s_px']:>3} "
            f"{fmt(r['hit_rate']):>22} {fmt(r['random_hit_rate']):>22} "
            f"{fmt(r['mass_fraction']):>22} {fmt(r['random_mass_fraction']):>22}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    data_dir = prepare_data(args)
    base, model, train_summary = train_models(args, data_dir)
    _log(f"training summary: {train_summary}")
    resolutions = {"resnet18_S": args.size, "morphhr_4S": args.size * args.k}
    data, kinds = load_positives(args, resolutions)
    _log(f"{len(kinds)} malignant test images with lesion masks")
    maps = saliency_maps(base, model, data, args.k)
    _log("saliency maps computed")
    rows = score(maps, data, args.k)
    pngs = write_examples(args, maps, data, args.examples)
    print_table(rows)
    result = {
        "args": vars(args),
        "training": train_summary,
        "images": len(kinds),
        "lesion_kinds": kinds,
        "rows": rows,
        "examples": [os.path.basename(p) for p in pngs],
        "seconds": time.perf_counter() - start,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    _log(f"done in {result['seconds']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
