"""One case of a batch, start to finish: read -> predict -> write; always returns a manifest row.

Shared by the local engine and the Ray workers, so both write exactly the same outputs. Every
exception a case can raise (corrupt file, mixed series, out of memory, a bug) becomes a
``failed`` row with a one-line reason; only ``KeyboardInterrupt`` propagates.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from medseg.errors import MedsegError, short_reason
from medseg.io import read_volume, write_mask_like, write_volume
from medseg.io.atomic import write_csv_atomic
from medseg.predict.inputs import CaseInput
from medseg.predict.protocol import PredictorProtocol
from medseg.predict.result import CasePrediction
from medseg.volume import Volume


def read_case(case: CaseInput) -> list[Volume]:
    """The input channels of ``case`` (one Volume each). Raises what the readers raise, and
    InputError for a scan with NaN/inf voxels (the network would turn them into an empty or
    garbage mask, reported as ``done``)."""
    from medseg.errors import InputError

    if case.notes:
        raise InputError("; ".join(case.notes))
    if case.is_dicom:
        vols = [read_volume(case.sources[0], series_uid=case.series_uid)]
    else:
        vols = [read_volume(p) for p in case.sources]
    for v, src in zip(vols, case.sources):
        bad = non_finite_voxels(v.array)
        if bad:
            raise InputError(f"{src} has {bad} NaN or infinite voxel value(s) of {v.array.size}; medseg does not "
                             "segment a scan with undefined intensities -- fix or re-export it")
    return vols


def non_finite_voxels(array) -> int:
    """Number of NaN/inf values in ``array`` (0 for integer arrays), counted slab by slab so a
    large scan needs no second full-size boolean array."""
    import numpy as np

    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.complexfloating):
        return 0
    step = max(1, a.shape[-1] // 16) if a.ndim else 1
    if a.ndim == 0:
        return int(not np.isfinite(a))
    return int(sum(int(np.count_nonzero(~np.isfinite(a[..., k:k + step]))) for k in range(0, a.shape[-1], step)))


def error_text(e: BaseException) -> str:
    """One line for the manifest's ``error`` column."""
    if isinstance(e, MedsegError):
        return short_reason(e, 300)
    name = type(e).__name__
    if isinstance(e, MemoryError) or "OutOfMemory" in name:
        return f"out of memory ({short_reason(e, 120)}); retry on a machine with more memory or with --device cpu"
    return f"{name}: {short_reason(e, 250)}"


def write_outputs(pred: CasePrediction, source: Volume, case: CaseInput, out_dir: Path, fmt: str) -> Path:
    """Mask (+ uncertainty map, + tables) of ``case`` under ``out_dir``, each written atomically.
    The mask file is written last, so its presence means the case is complete."""
    out = case.output(out_dir, fmt)
    base = out_dir / case.key
    if pred.uncertainty is not None:
        write_volume(pred.uncertainty, base.parent / f"{base.name}_uncertainty.nii.gz", overwrite=True)
    for suffix, rows in pred.tables.items():
        write_csv_atomic(base.parent / f"{base.name}_{suffix}.csv", rows, list(rows[0]) if rows else ["id"])
    if fmt == "dicom-seg":
        from medseg.io.dicom_seg import write_dicom_seg

        write_dicom_seg(pred.mask, source, pred.labels, out, overwrite=True, model_id=pred.mask.meta.get("model_id"))
    else:
        write_mask_like(pred.mask, source, out, overwrite=True)
    return out


def run_case(predictor: PredictorProtocol, case: CaseInput, out_dir: Path, fmt: str, uncertainty: bool, *, channels=None,
             read_error: BaseException | None = None, read_seconds: float = 0.0, progress=None, cancel=None) -> dict:
    """Predict and write one case; returns its manifest row (status done or failed).

    ``channels``/``read_error``/``read_seconds``: the result of a read done ahead of time
    (prefetching); when both are None the case is read here.
    """
    t0 = time.perf_counter()
    prefetched = channels is not None or read_error is not None
    row = {"case": case.key, "input": "", "output": "", "status": "failed", "error": "",
           "model_id": predictor.model_id}
    try:
        row["input"] = case.input_text
        if channels is None and read_error is None:
            channels = read_case(case)
            read_seconds = time.perf_counter() - t0
        if read_error is not None:
            raise read_error
        if fmt == "dicom-seg" and not case.is_dicom:
            from medseg.errors import InputError

            raise InputError("--format dicom-seg needs a DICOM input; this case is a file -- use --format nifti or nrrd")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pred = predictor.predict(channels, progress=progress, cancel=cancel, uncertainty=uncertainty)
        t_write = time.perf_counter()
        out = write_outputs(pred, channels[0], case, out_dir, fmt)
        row.update({"output": str(out.relative_to(out_dir)), "status": "done",
                    "uncertainty": "" if pred.uncertainty_score is None else pred.uncertainty_score,
                    "read_s": round(read_seconds, 3), "write_s": round(time.perf_counter() - t_write, 3)})
        row.update({f"{k}_s": round(v, 3) for k, v in pred.timings.items()})
        row.update({f"volume_ml_{n}": v for n, v in pred.volumes_ml.items()})
        if pred.notes:
            row["note"] = "; ".join(pred.notes)
    except Exception as e:  # noqa: BLE001 -- one bad case never stops the batch (Ctrl-C still does)
        row["error"] = error_text(e)
        _free_gpu()
    row["seconds"] = round(time.perf_counter() - t0 + (read_seconds if prefetched else 0.0), 3)
    return row


def _free_gpu() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass

