# capsim: two commands on a fresh clone.
#   make demo   create .venv, install, run the example scenarios
#   make test   create .venv, install everything (CPU torch included), run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# A bare "pip install torch" resolves multi-GB CUDA wheels; the pinned version takes the local
# CPU wheel where pip's find-links has one. On a GPU machine: make test TORCH_SPEC="torch"
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench validate clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.full: $(VENV)/.base
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,calibrate]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/capsim train examples/train_gpt3_175b.yaml
	$(VENV)/bin/capsim serve examples/serve_llama3_8b.yaml

test: $(VENV)/.full
	$(VENV)/bin/ruff check capsim simulator calibrate tui tests bench scripts examples
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 tests

lint: $(VENV)/.full
	$(VENV)/bin/ruff check .

validate: $(VENV)/.base
	$(PY) bench/validate_training.py
	$(PY) bench/validate_serving.py

bench: $(VENV)/.base
	$(PY) bench/training_speed.py
	$(PY) bench/serving_speed.py
	$(PY) bench/sweep_speed.py
	$(PY) bench/autoscale_speed.py
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info
