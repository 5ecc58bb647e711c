#!/usr/bin/env bash
# The GPU check (issue 17): on one CUDA GPU, in about 12 minutes, on a machine that has PyTorch but reaches no
# package registry. It runs tests/test_gpu.py, the benchmarks on CUDA (--quick) and the paper profile's rehearsal
# on CUDA, and writes the measured times beside the CPU rehearsal's projection:
#
#   benchmarks/gpu_check.sh prepare   here, where PyPI is reachable: the wheels the GPU machine lacks (what the
#                                     project runs on besides PyTorch: benchmarks/gpu_wheels.py), into
#                                     build/gpu-wheels/ (checked: at most 64 MiB; carry it to the GPU machine)
#   benchmarks/gpu_check.sh           there (the working tree with build/gpu-wheels/ beside it): a venv on top of
#                                     the machine's own PyTorch, the wheels installed offline, then the checks;
#                                     everything into build/gpu-check/ (log.txt, summary.md, the rehearsal's plan)
#
# GPU_CHECK_NOTEBOOKS picks the rehearsed notebooks (default: 02, 03, 04, the GPU paths that need no file too large
# to travel: see benchmarks/gpu_wheels.py); GPU_CHECK_HAVE names what the GPU machine has (prepare leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=build/gpu-wheels
OUT=build/gpu-check
VENV=build/gpu-venv
MAX_WHEELS_MIB=64
NOTEBOOKS=${GPU_CHECK_NOTEBOOKS:-02_mnist_chains 03_imagenet_chains 04_cyclegan_attractors}

if [ "${1:-}" = "prepare" ]; then
  rm -rf "$WHEELS"
  "${PYTHON:-.venv/bin/python}" benchmarks/gpu_wheels.py "$WHEELS"
  mib=$(du -sm "$WHEELS" | cut -f1)
  echo "== $(ls "$WHEELS" | wc -l) wheels, ${mib} MiB in $WHEELS"
  if [ "$mib" -gt "$MAX_WHEELS_MIB" ]; then
    echo "error: over ${MAX_WHEELS_MIB} MiB; delete what the GPU machine has already (largest first):" >&2
    ls -S "$WHEELS" | head -8 >&2; exit 1
  fi
  exit 0
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name())'
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv --system-site-packages "$VENV"  # the machine's PyTorch, not a second copy
fi
PY="$VENV/bin/python"
if [ -d "$WHEELS" ]; then
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$WHEELS"/*.whl || \
    "$PY" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg RESONANCE_VENV="$VENV"
"$PY" -c 'from resonance_utils.run_notebooks import ensure_kernel; ensure_kernel()'

declare -A took
step() {  # name, command...: run it, keep its wall time, go on after a failure (the summary says which)
  local name=$1 t0 rc=0; shift
  echo "== $name"; t0=$(date +%s)
  "$@" || rc=$?
  took[$name]="$(( $(date +%s) - t0 )) s, exit $rc"
}
step "tests/test_gpu.py" "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py
step "benchmarks (cuda, --quick)" "$PY" -m benchmarks.run --device cuda --quick --out "$OUT/benchmarks"
only=(); for nb in $NOTEBOOKS; do only+=(--only "$nb"); done
step "rehearsal (cuda)" env RESONANCE_REHEARSAL_DIR="$PWD/$OUT/rehearsal" RESONANCE_DATA_DIR="$PWD/$OUT/data" \
    RESONANCE_FIGURES_DIR="$PWD/$OUT/figures" "$PY" -m resonance_utils.run_notebooks --profile paper --rehearse \
    --jobs 1 --force "${only[@]}"

{
  echo "# GPU check, $(date -u +%F) on $("$PY" -c 'import torch; print(torch.cuda.get_device_name())')"
  echo
  echo "| step | wall time, exit |"; echo "|---|---|"
  for k in "tests/test_gpu.py" "benchmarks (cuda, --quick)" "rehearsal (cuda)"; do echo "| $k | ${took[$k]:-not run} |"; done
  echo
  # the CUDA rehearsal's plan (measured on this GPU) beside the CPU rehearsal's, when both are here
  "$PY" - "$OUT/rehearsal/plan.json" build/paper-rehearsal/plan.json <<'EOF'
import json, sys
from pathlib import Path
gpu, cpu = (json.loads(Path(p).read_text()) if Path(p).exists() else None for p in sys.argv[1:])
if gpu is None:
    sys.exit("no CUDA plan: the rehearsal failed (see log.txt)")
print("| notebook | rehearsal here | projected full run here (measured per unit on this GPU) | "
      "estimated from FLOPs (plan's assumption) | projected on the CPU |")
print("|---|---|---|---|---|")
for nb, row in gpu["notebooks"].items():
    c = (cpu or {}).get("notebooks", {}).get(nb, {})
    h = lambda s: "-" if s is None else f"{s / 60:.1f} min"
    print(f"| {nb} | {h(row['rehearsal_seconds'])} | {h(row['projected_seconds'])} | "
          f"{h(row['projected_gpu_seconds'])} | {h(c.get('projected_seconds'))} |")
EOF
} > "$OUT/summary.md"
cat "$OUT/summary.md"
