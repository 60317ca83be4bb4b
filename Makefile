# Every target builds the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is a CPU wheel kept in /opt/wheels on the development machines.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install test demo lint bench bench-deploy bench-serve bench-browser clean parity paddle-venv browser web

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

# ruff, then the layer contract of pyproject.toml ([tool.importlinter]): an upward import fails.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks train.py val.py predict.py
	$(VENV)/bin/lint-imports --no-cache

# Debian's Chromium and chromedriver for tests/test_browser.py (the `humanseg serve` page), installed
# with apt-get where missing and allowed (root, or sudo without a password); elsewhere the browser
# tests skip and say why. Never a downloaded browser.
CHROMIUM_PACKAGES := chromium chromium-driver
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null; then \
		echo "browser: no apt-get here; the browser tests will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(CHROMIUM_PACKAGES)) \
		|| echo "browser: apt-get could not install Chromium; the browser tests will be skipped"; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		(sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y \
		$(CHROMIUM_PACKAGES)) \
		|| echo "browser: apt-get could not install Chromium; the browser tests will be skipped"; \
	else echo "browser: installing Chromium needs root; the browser tests will be skipped"; fi

# onnxruntime-web for the page's in-browser inference (`humanseg serve` serves it from
# node_modules/; not committed). Without npm the page segments the camera on the server instead
# and the in-browser test skips.
ONNXRUNTIME_WEB_VERSION := 1.30.0
node_modules/onnxruntime-web/package.json:
	npm install --no-save --no-package-lock --no-audit --no-fund \
		onnxruntime-web@$(ONNXRUNTIME_WEB_VERSION)

web:
	@if command -v npm >/dev/null; then $(MAKE) node_modules/onnxruntime-web/package.json; \
	else echo "web: no npm here; the page will segment the camera on the server"; fi

test: lint paddle-venv browser web
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

# `humanseg serve` under load on loopback (1, 4, 16 concurrent clients); docs/benchmarks.md.
bench-serve: install
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_serve.py

# The page's camera paths (server over WebSocket / HTTP, torch / onnxruntime, and in the page
# with onnxruntime-web) in headless Chromium; docs/deploy.md.
bench-browser: install browser node_modules/onnxruntime-web/package.json
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_browser.py

clean:
	rm -rf $(VENV) output node_modules
