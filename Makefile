# make run   - create .venv, install the core and every plugin, run the default suite, write the report
# make test  - install the same (plus system packages the tests need), lint (ruff, ruff format, mypy), run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RESULTS ?= results
SUITE ?= smoke
# Every first-party plugin, installed exactly as a third party's would be. Extras: the GPU path of the softmax
# plugin (CuPy + NVRTC, so its kernels compile here), the pretrained MiniLM model of the quantization suite,
# and dataset generation of the D4RL plugin.
PLUGINS := $(filter-out plugins/softmax plugins/quant plugins/d4rl,$(wildcard plugins/*)) \
	plugins/softmax[gpu] plugins/quant[minilm] plugins/d4rl[generate]
PLUGIN_FILES := $(wildcard plugins/*/pyproject.toml)

.PHONY: install run test lint system-deps benchmark clean

$(BIN)/.installed: pyproject.toml $(PLUGIN_FILES) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: this exact version is on local disk (CPU build); a looser requirement pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[ray,test]' $(foreach p,$(PLUGINS),-e '$(p)')
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/harness --results-dir $(RESULTS) run $(SUITE) --jobs 2; status=$$?; \
	if [ $$status -le 1 ]; then $(BIN)/harness --results-dir $(RESULTS) report $(SUITE) --out $(RESULTS)/report; fi; \
	exit $$status

# Debian's chromium for the report page tests (headless); apt-get works as root on these machines.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else echo "chromium is missing: sudo apt-get install chromium"; exit 1; fi; }

# ruff (lint and format) over the repository; mypy over the core (harness/), configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install system-deps lint
	$(BIN)/pytest -m "not gpu" -q -n 2 --dist loadfile --durations=15

benchmark: install
	$(BIN)/python benchmarks/core/overhead.py

clean:
	rm -rf $(RESULTS)
