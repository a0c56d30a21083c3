#!/usr/bin/env bash
# The GPU check: ResNet18 against MorphHR at S224 and S896 (mixed precision,
# batch 16 and 32) under Keras 3's JAX backend, on a machine that has JAX with
# CUDA but no TensorFlow and no Keras. Run from a clean copy of the repository
# with the wheels from `benchmarks/gpu_wheels.sh` in .whl/:
#
#   bash benchmarks/gpu_check.sh OUT_DIR              # at most CHECK_SECONDS (300)
#   bash benchmarks/gpu_check.sh OUT_DIR --dry-run    # CPU, tiny sizes
#   bash benchmarks/gpu_check.sh OUT_DIR --with-sweep # also the fine-detail sweep
#   bash benchmarks/gpu_check.sh OUT_DIR --sweep-only # only the sweep
#
# Figures go to OUT_DIR/gpu_check.json (and OUT_DIR/fine_detail_sweep.json),
# written as each row finishes, so a time limit keeps the rows done. CHECK_ARGS
# and SWEEP_ARGS pass options to gpu_check.py and fine_detail_sweep.py;
# CHECK_SECONDS and SWEEP_SECONDS (330) bound each part.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu_check.sh OUT_DIR [--dry-run] [--with-sweep | --sweep-only]}
shift
dry=""; sweep=0; check=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry="--dry-run" ;;
    --with-sweep) sweep=1 ;;
    --sweep-only) sweep=1; check=0 ;;
    *) echo "gpu_check.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
PY=${PYTHON:-python3}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} MORPHHR_MODEL_SIDE_ONLY=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
if ! "$PY" -c "import keras" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/morphhr_site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/morphhr_site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_check.sh: keras is missing and .whl/ has no wheels; run benchmarks/gpu_wheels.sh here first" >&2
    exit 1
  fi
fi
"$PY" -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices())" 2>&1 | tail -1
if [ "$check" = 1 ]; then
  timeout "${CHECK_SECONDS:-300}" "$PY" benchmarks/gpu_check.py \
    --out "$out/gpu_check.json" --timeout 150 ${CHECK_ARGS:-} $dry
fi
if [ "$sweep" = 1 ]; then
  timeout "${SWEEP_SECONDS:-330}" "$PY" benchmarks/fine_detail_sweep.py \
    --out "$out/fine_detail_sweep.json" ${SWEEP_ARGS:-} $dry
fi
exit 0
