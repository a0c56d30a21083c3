"""The ingest CLI and its local runner with a progress bar.

::

    python -m morphhr_tf.data.ingest --source cbis_ddsm --root DIR --out DIR \\
        [--image-size 896] [--workers 2] [--worker-mode threads]

runs :func:`morphhr_tf.data.ingest.run_ingest` and prints its summary as
JSON. The salt of the patient keys comes from ``$MORPHHR_SALT`` (see
:mod:`morphhr_tf.data.deid`); it is never written to any output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from morphhr_tf.runtime import WORKER_MODES

from morphhr_tf.data.adapters import SOURCES
from morphhr_tf.data.deid import SALT_ENV
from morphhr_tf.data.dicom_reader import DEFAULT_MODALITIES
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE


def run_with_progress(pipeline, progress_dir: str, total: int, show: bool) -> None:
    """Runs a Beam pipeline to completion, with a tqdm bar on stderr when
    ``show``: the bar counts the bytes workers append to the files in
    ``progress_dir`` (one per processed record). Errors of the run are
    re-raised here."""
    errors: list[BaseException] = []

    def target():
        try:
            pipeline.run().wait_until_finish()
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)

    thread = threading.Thread(target=target, name="morphhr-ingest", daemon=True)
    thread.start()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="ingest", unit="img", file=sys.stderr)
    while thread.is_alive():
        thread.join(timeout=0.5)
        if bar is not None:
            done = 0
            try:
                for name in os.listdir(progress_dir):
                    done += os.path.getsize(os.path.join(progress_dir, name))
            except OSError:
                pass
            bar.update(min(done, total) - bar.n)
    if bar is not None:
        bar.close()
    if errors:
        raise errors[0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m morphhr_tf.data.ingest",
        description=(
            "Ingest a mammography data set into gzip TFRecords per split. "
            f"The patient-key salt is read from ${SALT_ENV}."
        ),
    )
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument(
        "--root",
        required=True,
        help="data set folder (manifest for csv); a local path or a URL such as gs://bucket/cbis (needs that filesystem's fsspec package, e.g. gcsfs)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help="the stored image size in pixels per side",
    )
    parser.add_argument("--workers", type=int, default=1, help="local Beam workers")
    parser.add_argument(
        "--worker-mode",
        choices=WORKER_MODES,
        default="processes",
        help=(
            "how more than one worker runs: OS processes (each starts an "
            "interpreter, then they scale with the cores) or threads of this "
            "process (no start-up; they share its interpreter lock)"
        ),
    )
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.0)
    parser.add_argument("--resize-mode", choices=("square", "pad"), default="square")
    parser.add_argument(
        "--modality",
        action="append",
        help="accepted DICOM Modality (repeatable; default MG; 'any' accepts all)",
    )
    parser.add_argument(
        "--images-dir", help="csv source: folder scanned for unlisted files"
    )
    parser.add_argument(
        "--private-dir",
        help=(
            "folder OUTSIDE --out for rejects_private.csv, the map from the "
            "redacted rejects back to real file paths (default: not written)"
        ),
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the summary as JSON."""
    from morphhr_tf.data.ingest import run_ingest

    args = _parser().parse_args(argv)
    modalities: tuple[str, ...] | None = DEFAULT_MODALITIES
    if args.modality:
        modalities = None if "any" in args.modality else tuple(args.modality)
    source_kwargs = {"images_dir": args.images_dir} if args.images_dir else None
    summary = run_ingest(
        args.source,
        args.root,
        args.out,
        image_size=args.image_size,
        num_workers=args.workers,
        worker_mode=args.worker_mode,
        eval_fraction=args.eval_fraction,
        test_fraction=args.test_fraction,
        resize_mode=args.resize_mode,
        modalities=modalities,
        progress=not args.no_progress,
        source_kwargs=source_kwargs,
        private_dir=args.private_dir,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
