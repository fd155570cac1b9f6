# Quick start: `make demo` (set up .venv and denoise the shipped CT sample), `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_OUT := demo-output

.PHONY: venv demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so that the bare torch requirement does not pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,dicom]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	mkdir -p $(DEMO_OUT)
	$(PY) -m LowLightDenoiseLib simulate Testing/Data/ct_chest_crop.nrrd $(DEMO_OUT)/ct_lowlight.nrrd --peak 100 --read-noise 1 --seed 1 --overwrite
	$(PY) -m LowLightDenoiseLib denoise $(DEMO_OUT)/ct_lowlight.nrrd $(DEMO_OUT)/ct_denoised.nrrd --reference Testing/Data/ct_chest_crop.nrrd --metrics $(DEMO_OUT)/metrics.csv --overwrite
	@echo "Denoised volume: $(DEMO_OUT)/ct_denoised.nrrd   metrics: $(DEMO_OUT)/metrics.csv"

test: venv
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
