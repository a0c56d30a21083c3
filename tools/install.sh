#!/usr/bin/env bash
# Creates or refreshes the project's virtual environment at .venv (or $MORPHHR_VENV).
#
# Idempotent and fast when nothing changed: the venv records the SHA-256 of
# requirements.txt and pyproject.toml it was built from, and is rebuilt only
# when they differ. The lock is installed with --no-deps (see BUILD.md), then
# the project itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${MORPHHR_VENV:-.venv}
STAMP="$VENV/.morphhr-lock.sha256"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$ver" in
  3.10|3.11|3.12) ;;
  *) echo "morphhr_tf needs Python 3.10-3.12 (3.11 is the tested one). Found $PY = $ver." >&2; exit 1 ;;
esac

echo "Installing the locked environment into $VENV (Python $ver); takes about 2 minutes with a warm pip cache..."
start=$(date +%s)
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip's own exit status, with one harmless warning of tfx's sdist filtered out.
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory"
  return "${PIPESTATUS[0]}"
}
pip_failed() {
  echo "pip failed (exit $1) installing $2 into $VENV; its output is above." >&2
  echo "Free space there: $(df -Ph "$VENV" | awk 'NR==2 {print $4}') (the environment takes about 4 GB)." >&2
  exit 1
}
pip_install --no-deps -r requirements.txt || pip_failed $? requirements.txt
pip_install --no-deps --no-build-isolation -e . || pip_failed $? "the project (editable)"
# Fail here, not in the middle of a test run, if the lock did not install.
"$VENV/bin/python" -c "import tensorflow, tfx.v1, ml_metadata, tensorflow_model_analysis, pydicom, morphhr_tf" 2>/dev/null \
  || { echo "The environment in $VENV does not import; see the pip output above." >&2; exit 1; }
echo "$want" > "$STAMP"
echo "Environment ready in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))."
