# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned so pip takes the CPU build where one is provided locally, instead of resolving
# the newest release with its multi-GB CUDA dependencies. Override: make test TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.perflab-installed

.PHONY: demo test venv lint lab bench clean browser gpu-check gpu-check-wheels gpu-check-lent

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[openvino,torch,dask,mnn,ncnn,lab]" --group dev
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/perflab run examples/demo.yaml -o data/demo --resume
	$(BIN)/perflab report data/demo -o reports/demo.html
	@echo "results: data/demo (parquet)   report: reports/demo.html"

# The report test opens the HTML in headless Chromium; it is installed where the machine allows
# (root with apt-get) and the test skips with the reason where it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will skip"; }

# The notebooks in JupyterLab (README "Exploring in JupyterLab"); RESULTS=folders, default the newest in data/
lab: $(STAMP)
	$(BIN)/perflab lab $(RESULTS)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

# The GPU check (README "Checking the GPU paths"). It runs on any machine: without a GPU every check
# is `unavailable` with its reason. It uses this checkout's venv where there is one, else python3
# (a lent GPU machine, where torch, CuPy and onnxruntime are preinstalled).
GPU_CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_JSON ?= data/gpu-check.json
WHEELS := .whl

gpu-check:
	$(GPU_CHECK_PYTHON) benchmarks/gpu_check.py -o $(GPU_CHECK_JSON)

# Downloads the wheels a lent machine lacks into $(WHEELS)/ (carried beside the tree); fails over 60 MiB.
gpu-check-wheels:
	$(GPU_CHECK_PYTHON) benchmarks/gpu_check_wheels.py gather -d $(WHEELS)

# On a lent GPU machine (no registry): the carried wheels it lacks, perflab itself, the check.
# A failed install does not stop the check: it then names what is missing.
gpu-check-lent:
	-$(GPU_CHECK_PYTHON) benchmarks/gpu_check_wheels.py install -d $(WHEELS)
	-$(GPU_CHECK_PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(GPU_CHECK_PYTHON) benchmarks/gpu_check.py -o $(GPU_CHECK_JSON)

clean:
	rm -rf $(VENV) data/demo reports/*.html
