# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-quick lint venv clean

# torch first, from the CPU build on disk, so no dependency pulls CUDA wheels; a GPU user who
# installed their own torch into .venv keeps it.
$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.dev

demo: $(VENV)/.base
	$(PY) -m pip install -q -e '.[train,serve]'
	$(VENV)/bin/discmed demo

test: $(VENV)/.dev
	bash scripts/test-setup.sh
	$(PY) -m pytest -m "slow or not slow" -p no:cacheprovider

test-quick: $(VENV)/.dev
	$(PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check discmed tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
