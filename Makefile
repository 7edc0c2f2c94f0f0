# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
#
# Installs come from the lock (requirements/lock.txt: every package pinned with its hashes, the
# set the suite passed with), through uv. pyproject.toml keeps the honest ranges for people who
# install discmed as a library; `make test-latest` tries the newest versions those ranges allow,
# and `make lock` refreshes the lock (see the README, "Dependencies").
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
LOCK := requirements/lock.txt
DEMO_LOCK := requirements/demo.txt
# Version caps of a dev tool lifted where they would hold back discmed's own packages (reasons inside).
OVERRIDES := --override requirements/overrides.txt
# torch is not in the lock: the CPU build lies on this kind of machine's disk (pip finds it through
# its own configuration), and a GPU user's own build must be kept. Where the CPU wheel is on disk,
# uv is told where to look too.
TORCH := torch==2.13.0
FIND_LINKS := $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# The suite on every core (pytest-xdist), one torch thread per process; a file's tests stay on one
# worker (--dist loadfile), so module fixtures (a served model, a trained folder) are built once.
XDIST ?= -n auto --dist loadfile

.PHONY: demo test test-quick test-latest lock lint venv clean llamacpp

# torch first, from the CPU build on disk, so no dependency pulls CUDA wheels; a GPU user who
# installed their own torch into .venv keeps it.
$(VENV)/.torch:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	touch $@

# Bytecode is compiled at install (uv does not by default): where PYTHONDONTWRITEBYTECODE is set,
# as on this project's machines, nothing writes it later and every process compiled transformers,
# pydantic and the rest from source, about 3.5 s of each `discmed` command's start.
$(VENV)/.base: $(VENV)/.torch $(DEMO_LOCK) pyproject.toml
	$(UV) pip install --python $(PY) -q --compile-bytecode -r $(DEMO_LOCK)
	$(UV) pip install --python $(PY) -q --no-deps -e .
	$(PY) -m compileall -q discmed
	touch $@

$(VENV)/.dev: $(VENV)/.torch $(LOCK) requirements/overrides.txt pyproject.toml
	$(UV) pip install --python $(PY) -q --compile-bytecode -r $(LOCK) $(OVERRIDES)
	$(UV) pip install --python $(PY) -q --no-deps -e .
	$(PY) -m compileall -q discmed
	touch $@ $(VENV)/.base

venv: $(VENV)/.dev

# llama.cpp's llama-server, llama-quantize and llama-tokenize, built from the pinned
# llama-cpp-python sdist's vendored tree and cached by version and flags in ~/.cache/discmed:
# once per machine (~15 min on 2 cores), a no-op after (see scripts/llamacpp.sh).
llamacpp: $(VENV)/.torch
	PYTHON=$(PY) bash scripts/llamacpp.sh

demo: $(VENV)/.base
	$(VENV)/bin/discmed demo

# Each phase prints its wall time ("[phase] install: N s"): what CI costs, by phase. The tiny model
# is built (or found in the shared cache) before pytest starts, so no test's timeout pays for it.
test:
	bash scripts/timed.sh install $(MAKE) --no-print-directory venv
	bash scripts/timed.sh system bash scripts/test-setup.sh
	bash scripts/timed.sh tiny $(PY) -m discmed tiny build
	bash scripts/timed.sh llamacpp $(MAKE) --no-print-directory llamacpp
	bash scripts/timed.sh tests env OMP_NUM_THREADS=1 $(PY) -m pytest -m "slow or not slow" -p no:cacheprovider \
		$(XDIST) --durations=40

test-quick: $(VENV)/.dev
	$(PY) -m pytest -p no:cacheprovider $(XDIST)

# The newest versions pyproject.toml allows, in a venv of their own, against the quick tests: drift
# is found here on purpose, not by a new user. Not in CI. Prints what differs from the lock.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q uv==$(UV_VERSION) $(TORCH)
	$(LATEST)/bin/uv pip install --python $(LATEST)/bin/python -q --compile-bytecode --upgrade $(FIND_LINKS) \
		-c requirements/torch.txt $(OVERRIDES) -e '.[dev]'
	$(LATEST)/bin/uv pip freeze --python $(LATEST)/bin/python --exclude-editable \
		| $(PY) scripts/lockdiff.py $(LOCK)
	$(LATEST)/bin/python -m pytest -p no:cacheprovider

# Refresh the lock to the newest allowed versions (then run `make test` and commit both files).
lock: $(VENV)/.torch
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(OVERRIDES) --upgrade -o $(LOCK)
	$(UV) pip compile pyproject.toml --extra train --extra serve $(LOCK_FLAGS) -c $(LOCK) -o $(DEMO_LOCK)

LOCK_FLAGS = --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	--no-emit-package torch -c requirements/torch.txt $(FIND_LINKS) --quiet

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check discmed tests benchmarks

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info
