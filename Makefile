# medseg: the two commands a new user needs are `make demo` and `make test`.
# Both create/refresh .venv (Python 3.11+) and install medseg editable with its test
# dependencies, pinned by constraints.txt (the torch/torchvision pair of ../shared/ENV.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medseg-installed
# pip prints one harmless line per local mirror folder it cannot find; hide just those.
PIPQ   := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
SAMPLES := data_samples/ct_chest/CTChest4.nrrd data_samples/ct_chest/Segmentation.seg.nrrd \
           data_samples/mr_brain_dicom data_samples/dicom_misc/ct_jpeg_lossless.dcm
PYTEST_ARGS ?=

.PHONY: demo test venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt napari_plugin/pyproject.toml
	@echo "==> setting up $(VENV) (first time: about 2 minutes, mostly PyTorch)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip $(PIPQ)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]" -e "napari_plugin[testing]" $(PIPQ)
	@$(BIN)/python -c "import medseg, torch, torchvision, monai; print('==> medseg', medseg.__version__, '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| monai', monai.__version__)"
	@touch $(STAMP)

demo: venv
	@for s in $(SAMPLES); do \
		echo; echo "==> medseg info $$s"; \
		$(BIN)/medseg info $$s || exit $$?; \
	done
	@mkdir -p demo_out
	@echo; echo "==> medseg convert data_samples/mr_brain_dicom demo_out/mr_brain.nii.gz"
	@$(BIN)/medseg convert data_samples/mr_brain_dicom demo_out/mr_brain.nii.gz --overwrite
	@echo; echo "==> medseg phantoms demo_out/phantoms --cases 6 (synthetic abdominal CT with labels)"
	@$(BIN)/medseg phantoms demo_out/phantoms --cases 6 --seed 0
	@echo; echo "==> medseg check-dataset demo_out/phantoms"
	@$(BIN)/medseg check-dataset demo_out/phantoms
	@echo; echo "==> medseg plan demo_out/phantoms --out demo_out/phantoms_plan.yaml"
	@$(BIN)/medseg plan demo_out/phantoms --out demo_out/phantoms_plan.yaml --overwrite
	@echo; echo "==> demo done: see demo_out/ (training and prediction join the demo when they land)"

test: venv
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/io.py
	$(BIN)/python bench/loading.py
	$(BIN)/python bench/metrics.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
