#!/usr/bin/env bash
# One-command accelerator report (issue 14): every model's width scan and the
# Bakshi-Kleindorfer engine against the jitted closed form, float32 and float64, as JSON.
#   PYTHONPATH=. benchmarks/gpu.sh [OUT_DIR] [gpu_report.py options, e.g. --budget 480]
# OUT_DIR defaults to $OUT, else benchmarks/results/gpu. See benchmarks/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${OUT:-$here/results/gpu}}"
shift || true
exec "${PYTHON:-python}" "$here/gpu_report.py" --out "$out" "$@"
