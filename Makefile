# The README's two commands: `make run` serves the shipped models, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# HOST=0.0.0.0 listens on every interface; writes (POST /train, cancel) then need DINO_ADMIN_TOKEN.
HOST ?= 127.0.0.1

.PHONY: run test lint models bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/python -m app serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy app
	$(BIN)/python -m pytest

# Rebuild the shipped weights: about 1 minute for dinos, 20 minutes for shakespeare on 2 cores.
models: $(VENV)/.installed
	$(BIN)/python -m app train --data data/dinos.txt --out model_store/dinos --seed 0
	$(BIN)/python -m app train --kind text --data data/shakespeare.txt --out model_store/shakespeare \
		--time-budget 1200 --seed 0

# Speed and quality measurements (slow; PyTorch comparisons need `pip install -e '.[bench]'`).
bench: $(VENV)/.installed
	$(BIN)/python bench/names_quality.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/sample_speed.py
	$(BIN)/python bench/poem_quality.py
	$(BIN)/python bench/lstm_speed.py
	$(BIN)/python bench/poem_speed.py
	$(BIN)/python bench/http_load.py
	$(BIN)/python bench/abuse.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
