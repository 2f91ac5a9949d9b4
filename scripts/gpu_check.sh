#!/usr/bin/env bash
# The GPU checks, as one command for a CUDA host (`make gpu-check`). It refuses to pass without CUDA.
#
#   1. the @pytest.mark.gpu tests: fails if none ran or any was skipped (a CPU torch cannot pass);
#   2. the scoring benchmark (RoBERTa-base-shaped classifier through Ray Data) and the generation
#      benchmark (Llama-2-7B-shaped, static cache), both recorded to benchmarks/RESULTS.md with
#      hardware, date and commit;
#   3. a full job on a synthetic corpus with the offline scorer on the GPU, its wall time recorded.
#
# Sized for one H100/H200 in under 10 minutes, without network. A host whose Python lacks Ray and
# affalign's small dependencies (a bare CUDA image) gets them from .devcarry/, which `make gpu-pack`
# fills on a machine with a package index (Ray trimmed by ../shared/tools/pack-ray-offline.sh, plus
# Python 3.12 wheels); nothing is downloaded here.
#
#   GPU_CHECK_PY     the Python to use (default: .venv/bin/python if it exists, else python3)
#   GPU_CHECK_ROWS   rows of the synthetic corpus for the full job (default 200000)
#   GPU_CHECK_SKIP   space-separated steps to skip: tests scoring generation job
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${GPU_CHECK_PY:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
ROWS="${GPU_CHECK_ROWS:-200000}"
SKIP=" ${GPU_CHECK_SKIP:-} "
LOG_DIR="${OUT:-runs/gpu-check}"
mkdir -p "$LOG_DIR"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

say() { printf '\n=== gpu-check: %s\n' "$*"; }

# 0. CUDA, or refuse
if ! "$PY" - <<'EOF'
import sys
try:
    import torch
except Exception as exc:  # noqa: BLE001
    sys.exit(f"gpu-check: torch does not import ({exc}); this needs a CUDA host")
if not torch.cuda.is_available():
    sys.exit(f"gpu-check: no CUDA device (torch {torch.__version__}, cuda build {torch.version.cuda}); "
             "these checks only mean something on a GPU host, so they refuse to pass here")
print(f"gpu-check: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF
then
  exit 1
fi

# Ray and small dependencies from .devcarry/ when this Python lacks them (a bare CUDA image)
if ! "$PY" -c "import ray, ahocorasick" >/dev/null 2>&1; then
  if [ ! -f .devcarry/ray-trim.tar.xz ]; then
    echo "gpu-check: this Python has no ray/pyahocorasick and .devcarry/ is empty: run 'make gpu-pack' on a machine with a package index and carry .devcarry/" >&2
    exit 1
  fi
  SITE="${GPU_CHECK_SITE:-/tmp/affalign-site}"
  mkdir -p "$SITE"
  tar xJf .devcarry/ray-trim.tar.xz -C "$SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .devcarry/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
# transformers older than affalign's floor (or no accelerate): the newer wheels `make gpu-pack` carried
if ! "$PY" -c "import accelerate, transformers; from affalign.backends.hf import check_transformers; check_transformers()" >/dev/null 2>&1; then
  if ls .devcarry/newer/*.whl >/dev/null 2>&1; then
    SITE="${GPU_CHECK_SITE:-/tmp/affalign-site}"
    mkdir -p "$SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .devcarry/newer/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu-check: this Python's transformers/accelerate are older than affalign needs and .devcarry/newer/ is empty: run 'make gpu-pack'" >&2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
AFFALIGN=("$PY" -m affalign.cli)

if [[ "$SKIP" != *" tests "* ]]; then
  say "gpu tests"
  "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$LOG_DIR/gpu-tests.xml" tests/gpu
  "$PY" - "$LOG_DIR/gpu-tests.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
if tests == 0 or skipped:
    sys.exit(f"gpu-check: {tests} gpu tests collected, {skipped} skipped: a GPU check that skips does not pass")
print(f"gpu-check: {tests} gpu tests passed")
EOF
fi

if [[ "$SKIP" != *" scoring "* ]]; then
  say "scoring benchmark (Ray Data, tokenize stage + GPU actor)"
  "$PY" benchmarks/bench_scoring.py --rows 300000 --batch-size 1024 --device cuda --record
  "$PY" benchmarks/bench_scoring.py --rows 300000 --batch-size 1024 --device cuda --actors 2 --record
fi

if [[ "$SKIP" != *" generation "* ]]; then
  say "generation benchmark (Llama-2-7B-shaped, random weights)"
  "$PY" benchmarks/bench_generation.py --batch-size 256 --batches 2 --record
fi

if [[ "$SKIP" != *" job "* ]]; then
  say "full job: $ROWS synthetic tweets, offline scorer on the GPU"
  corpus="$LOG_DIR/corpus"; out="$LOG_DIR/job"
  rm -rf "$corpus" "$out"
  "${AFFALIGN[@]}" synth --dataset covid --rows "$ROWS" --seed 0 --out "$corpus"
  start=$(date +%s)
  "${AFFALIGN[@]}" run jobs/demo.yaml --out "$out" --set input.path="$corpus" \
    --set scoring.emotion.device=cuda --set scoring.moral.device=cuda --set generation.enabled=false \
    --set min_texts_per_group=100
  secs=$(( $(date +%s) - start ))
  "$PY" - "$out/run.json" "$ROWS" "$secs" <<'EOF'
import datetime, json, subprocess, sys
import torch
run = json.load(open(sys.argv[1]))
assert run["status"] == "complete", run["status"]
rows, secs = int(sys.argv[2]), int(sys.argv[3])
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
except OSError:
    commit = "unknown"
line = (f"| {datetime.date.today()} | {commit} | {torch.cuda.get_device_name(0)} | offline scorer on cuda, "
        f"generation off | {rows} | {secs} s | {rows / max(secs, 1):.0f} tweets/s end to end |\n")
with open("benchmarks/RESULTS.md", "a") as f:
    f.write("\n## gpu_check.sh full job\n\n| date | commit | hardware | job | rows | wall | rate |\n|---|---|---|---|---|---|---|\n" + line)
print("gpu-check: full job", line.strip())
EOF
fi
say "passed"
