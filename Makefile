# Every target builds the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is a CPU wheel kept in /opt/wheels on the development machines.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install test demo lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FIND) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check src tests benchmarks train.py val.py predict.py

test: lint
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/humanseg demo --save_dir output/demo

bench: install
	$(PY) benchmarks/bench_loss.py

clean:
	rm -rf $(VENV) output
