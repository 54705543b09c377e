# convscope: `make demo` and `make test` are the whole set-up; each builds .venv when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.convscope-installed
RUNS   ?= runs

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(PY) -m convscope train --data mnist5k --model convnet --out $(RUNS)/demo --force
	$(PY) -m convscope evaluate $(RUNS)/demo/model.safetensors --data mnist5k --out $(RUNS)/demo/confusion.png
	$(PY) -m convscope samples mnist5k --n 6 --out $(RUNS)/demo/samples
	$(PY) -m convscope predict $(RUNS)/demo/model.safetensors $(RUNS)/demo/samples/*.png --top-k 3
	@echo
	@echo "Results are in $(RUNS)/demo/: model.safetensors, metrics.jsonl, config.json, confusion.png, samples/"

test: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m bench

lint: setup
	$(PY) -m ruff check src tests bench

clean:
	rm -rf $(RUNS) .pytest_cache
