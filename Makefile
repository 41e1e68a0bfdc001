# The README's two commands: `make run` serves the shipped models, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# HOST=0.0.0.0 listens on every interface; writes (POST /train, cancel) then need DINO_ADMIN_TOKEN.
HOST ?= 127.0.0.1

.PHONY: run test lint models bench docker-smoke dist screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Serving needs only the package's own dependencies; the tests add the dev extras.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/python -m app serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy app
	$(BIN)/python -m pytest

# Rebuild the shipped weights: about 2 minutes for dinos, 20-30 minutes for shakespeare on 2 cores
# (200 epochs: counted in steps, so the same weights on any machine).
models: $(VENV)/.installed
	$(BIN)/python -m app train --data data/dinos.txt --out model_store/dinos --seed 0
	$(BIN)/python -m app train --kind text --data data/shakespeare.txt --out model_store/shakespeare \
		--epochs 200 --seed 0

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

# The README's picture of the page, taken by the browser tests (needs Debian's chromium).
screenshot: $(VENV)/.installed
	DINO_SCREENSHOT=docs/page.png $(BIN)/python -m pytest -q tests/test_page_browser.py

# Build the real Dockerfile on a Debian stand-in base, run it, check it (needs root; see the script).
docker-smoke:
	scripts/docker-smoke

# sdist + wheel in dist/, checked by twine (build and twine are installed into .venv on demand).
dist: $(BIN)/python
	$(BIN)/pip install --quiet build twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
