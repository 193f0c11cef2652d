#!/usr/bin/env bash
# Creates .venv and installs alignplan with everything the app and the tests need.
# torch is pinned here, not in pyproject: `pip install torch==2.13.0` takes the local CPU wheel on
# the CI machine and the CUDA build from PyPI anywhere else. Set ALIGNPLAN_TORCH to override.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "${ALIGNPLAN_TORCH:-torch==2.13.0}"
python -m pip install -q -e ".[dev]"
# The export checks parse our files with verl's and OpenRLHF's own code; their own pins would downgrade
# transformers, so they come without dependencies (what they import on CPU is in the dev extras).
python -m pip install -q --no-deps "verl==0.9.1" "openrlhf==0.11.2"
if [ "${1:-}" = "--browser" ] && ! command -v shellcheck >/dev/null && command -v apt-get >/dev/null; then
  # the tests lint the exported SLURM/Ray scripts with it
  (apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null) || echo "setup: could not install shellcheck" >&2
fi
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null; then
  # Debian's Chromium for the browser tests (playwright's own browser download is never used).
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: could not install chromium; browser tests will be skipped" >&2
  fi
fi
