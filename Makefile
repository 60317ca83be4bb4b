# Every target builds the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is a CPU wheel kept in /opt/wheels on the development machines.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install test demo lint bench bench-deploy clean parity paddle-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FIND) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# PaddleSeg reference environment for the parity tests and benchmarks (tools/paddle_reference.py).
PADDLE_VENV ?= .venv-paddle
$(PADDLE_VENV)/.installed: tools/paddle-requirements.txt
	$(PYTHON) -m venv $(PADDLE_VENV)
	$(PADDLE_VENV)/bin/pip install -r tools/paddle-requirements.txt
	$(PADDLE_VENV)/bin/pip install --no-deps paddleseg==2.8.0
	touch $@

paddle-venv: $(PADDLE_VENV)/.installed

parity: install paddle-venv
	$(PY) -m pytest -q tests/test_parity.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks train.py val.py predict.py

test: lint paddle-venv
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/humanseg demo --save_dir output/demo

# SC loss vs cross-entropy, models and transforms vs PaddleSeg 2.8 (same run); docs/benchmarks.md.
bench: install paddle-venv
	$(PY) benchmarks/bench_loss.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_transforms.py

# MediaPipe's selfie segmenter for the deployment benchmark (its numpy<2 pin needs its own venv).
MEDIAPIPE_VENV ?= .venv-mediapipe
$(MEDIAPIPE_VENV)/.installed:
	$(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/pip install mediapipe==0.10.21
	touch $@

# Latency (PyTorch vs onnxruntime vs MediaPipe), mIoU, video flicker and FPS; docs/benchmarks.md.
# Passive OpenMP waiting: spinning threads collapse when the 2 cores are shared with other jobs.
bench-deploy: install $(MEDIAPIPE_VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_deploy.py \
		--mediapipe_python $(MEDIAPIPE_VENV)/bin/python

clean:
	rm -rf $(VENV) output
