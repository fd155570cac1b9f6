# Quick start: `make demo` (set up .venv and denoise the shipped CT sample), `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_OUT := demo-output

# Slicer 5.8 runs Python 3.9: the torch-free part of the library is also tested there when a 3.9
# interpreter exists (pyenv on the development and CI machines).
PY39 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9) $(wildcard /usr/bin/python3.9))
PY39_TESTS := Testing/Python/test_io.py Testing/Python/test_degrade.py Testing/Python/test_vst.py \
	Testing/Python/test_noise.py Testing/Python/test_classical.py

.PHONY: venv demo test test-py39 clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so that the bare torch requirement does not pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	mkdir -p $(DEMO_OUT)
	$(PY) -m LowLightDenoiseLib simulate Testing/Data/ct_chest_crop.nrrd $(DEMO_OUT)/ct_lowlight.nrrd --peak 100 --read-noise 1 --seed 1 --overwrite
	$(PY) -m LowLightDenoiseLib denoise $(DEMO_OUT)/ct_lowlight.nrrd $(DEMO_OUT)/ct_denoised.nrrd --reference Testing/Data/ct_chest_crop.nrrd --metrics $(DEMO_OUT)/metrics.csv --overwrite
	@echo "Denoised volume: $(DEMO_OUT)/ct_denoised.nrrd   metrics: $(DEMO_OUT)/metrics.csv"

test: venv
	$(PY) -m pytest -n 2 -q

test-py39:
	@if [ -z "$(PY39)" ]; then echo "No Python 3.9 interpreter found: Python 3.9 check skipped."; exit 0; fi; \
	set -e; $(PY39) -m venv .venv39; \
	.venv39/bin/python -m pip install -q numpy scipy SimpleITK scikit-image PyWavelets tqdm pytest hypothesis; \
	.venv39/bin/python -m pytest -q -p no:cacheprovider $(PY39_TESTS)

clean:
	rm -rf $(VENV) .venv39 $(DEMO_OUT) .pytest_cache
