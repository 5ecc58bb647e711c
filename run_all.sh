#!/usr/bin/env bash
# Regenerate every figure and table, or run the tests. Sets up .venv on first use.
#
#   ./run_all.sh                      all notebooks; profile paper on a CUDA machine, else quick
#   ./run_all.sh --profile smoke      a profile: smoke | quick | paper
#   ./run_all.sh --only 01_lucier_room -p n_iterations=200 --force
#   ./run_all.sh --list               the notebooks
#   ./run_all.sh --jobs 3             up to 3 notebooks at once (each after the notebooks it reads)
#   ./run_all.sh --rehearse           the paper profile at small counts (build/paper-rehearsal/) and its cost plan
#   ./run_all.sh test                 pytest for resonance_utils + nbval of every notebook (smoke profile)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${RESONANCE_VENV:-.venv}
PY="$VENV/bin/python"
PYTHON=${PYTHON:-python3}
# this checkout's package first: a .venv shared between checkouts (RESONANCE_VENV) has its editable install pointing
# at one of them, and run keys hash the source that ran, so another checkout's code would make (and read) its caches
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Debian's chromium and its driver, for the results page's browser test (tests/test_results_page.py); installed
# where they are missing and apt-get can (root). Elsewhere set-up goes on and that test skips, naming what is missing.
setup_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium and chromium-driver (apt-get) for the results page's browser test"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
          >/dev/null; then
      return 0
    fi
  fi
  echo "== note: no chromium + chromium-driver (Debian: apt-get install chromium chromium-driver, as root);" \
       "the results page's browser test will skip" >&2
}

setup_env() {
  local stamp="$VENV/.resonance-env" want
  want=$(cat pyproject.toml requirements-nodeps.txt | sha256sum | cut -c1-16)
  if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  echo "== setting up $VENV (first time: a few minutes; torch alone is ~5.6 GB)"
  if [ ! -x "$PY" ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed"' || exit 1
    "$PYTHON" -m venv "$VENV"
  fi
  "$PY" -m pip install --quiet --upgrade pip
  # torch first, pinned, so that nothing later pulls another build
  "$PY" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  "$PY" -m pip install --quiet -e ".[test]"
  "$PY" -m pip install --quiet --no-deps -r requirements-nodeps.txt
  setup_browser
  # the same environment as a Jupyter kernel, "Python (resonance)", for JupyterLab users and papermill
  "$PY" -c 'from resonance_utils.run_notebooks import ensure_kernel; ensure_kernel()'
  echo "$want" > "$stamp"
  echo "== environment ready"
}

run_tests() {
  # strict figures: a notebook that saves a figure with colliding text or dead space fails (plots.layout_problems)
  export RESONANCE_PROFILE=smoke MPLBACKEND=Agg RESONANCE_STRICT_FIGURES=1
  local rc=0
  # one pytest run: the package's tests, then every notebook under nbval (outputs of '# NBVAL_CHECK_OUTPUT'
  # cells compared after tests/nbval_sanitize.cfg); exit code 5 (nothing collected) is a failure too
  "$PY" -m pytest -p no:cacheprovider tests notebooks --nbval-lax --nbval-current-env \
      --nbval-sanitize-with tests/nbval_sanitize.cfg "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; return 1; fi
  return "$rc"
}

if [ "${1:-}" = "test" ]; then
  shift
  setup_env
  run_tests "$@"
else
  setup_env
  # exec: the driver takes this shell's place, so Ctrl-C, SIGTERM and the exit status (130 after an interrupt)
  # reach it and come back unchanged
  exec "$PY" -m resonance_utils.run_notebooks "$@"
fi
