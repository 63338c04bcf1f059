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
	@echo "==> setting up $(VENV) (first time: about 3 minutes, mostly PyTorch)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip $(PIPQ)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]" -e "napari_plugin[testing]" $(PIPQ)
	@$(BIN)/python -c "import medseg, torch, torchvision, monai; print('==> medseg', medseg.__version__, '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| monai', monai.__version__)"
	@touch $(STAMP)

# The main job end to end on the bundled samples (on 2 AVX-512 CPU cores after set-up: about 15-20 minutes for the U-Net
# steps and 3-4 for the instance model, whose 6 epochs take about 2.5 minutes and validate once; 2-3x on AVX2-only CPUs,
# faster with a GPU). Every step is a plain `medseg` command you can run yourself.
DEMO       := demo_out
DEMO_EPOCHS ?= 40
DEMO_INSTANCE_EPOCHS ?= 6
demo: venv
	@echo; echo "==> 1/9 medseg info data_samples/ct_chest/CTChest4.nrrd (a real CT: geometry as read)"
	@$(BIN)/medseg info data_samples/ct_chest/CTChest4.nrrd
	@echo; echo "==> 2/9 medseg phantoms: 64 training + 8 held-out synthetic abdominal CTs (liver, spleen, kidney, tumours)"
	@$(BIN)/medseg phantoms $(DEMO)/phantoms --cases 64 --seed 0
	@$(BIN)/medseg phantoms $(DEMO)/heldout --cases 8 --seed 1
	@echo; echo "==> 3/9 medseg check-dataset + plan (automatic: sized for this machine's CPU or GPU, class roles from the labels)"
	@$(BIN)/medseg check-dataset $(DEMO)/phantoms
	@$(BIN)/medseg plan $(DEMO)/phantoms --out $(DEMO)/plan.yaml --overwrite
	@echo; echo "==> 4/9 medseg train: organ + tumour 3D U-Net, $(DEMO_EPOCHS) epochs (configs/unet_tumor_cpu.yaml)"
	@rm -rf $(DEMO)/run $(DEMO)/phantoms/splits.json
	@$(BIN)/medseg train --config configs/unet_tumor_cpu.yaml --dataset $(DEMO)/phantoms --plan $(DEMO)/plan.yaml \
		--out $(DEMO)/run --epochs $(DEMO_EPOCHS)
	@echo; echo "==> 5/9 medseg predict: the held-out phantoms and the real chest CT (batch, manifest, uncertainty)"
	@$(BIN)/medseg predict $(DEMO)/heldout/imagesTr data_samples/ct_chest/CTChest4.nrrd --model $(DEMO)/run \
		--out $(DEMO)/predictions --uncertainty --overwrite
	@echo; echo "==> 6/9 medseg evaluate + report: Dice / HD95 against the held-out references, overlays, curve"
	@$(BIN)/medseg report $(DEMO)/predictions --ref $(DEMO)/heldout/labelsTr --run $(DEMO)/run --out $(DEMO)/report --overwrite
	@echo; echo "==> 7/9 the instance model: a Mask R-CNN for the lesion class, trained from random weights for $(DEMO_INSTANCE_EPOCHS) short epochs (configs/maskrcnn_lesions_cpu.yaml; a short run: one validation at the end, no flip TTA or false-positive mining, which pay off over the preset's full 20 minutes: BENCHMARKS.md), then the held-out phantoms"
	@rm -rf $(DEMO)/instance_run
	@$(BIN)/medseg train --config configs/maskrcnn_lesions_cpu.yaml --dataset $(DEMO)/phantoms --out $(DEMO)/instance_run \
		--epochs $(DEMO_INSTANCE_EPOCHS) --set val_every=$(DEMO_INSTANCE_EPOCHS) --set inference.tta=none \
		--set data.hard_negative_fraction=0
	@$(BIN)/medseg predict $(DEMO)/heldout/imagesTr --model $(DEMO)/instance_run --out $(DEMO)/instance_predictions --overwrite
	@echo; echo "==> 8/9 medseg convert: the bundled MR DICOM series to NIfTI"
	@$(BIN)/medseg convert data_samples/mr_brain_dicom $(DEMO)/mr_brain.nii.gz --overwrite
	@echo; echo "==> 9/9 summary"
	@$(BIN)/python -m medseg.demo_summary $(DEMO)

test: venv
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/io.py
	$(BIN)/python bench/loading.py
	$(BIN)/python bench/metrics.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
