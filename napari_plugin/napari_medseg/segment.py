"""The logic of the Segment widget, without Qt: which layers can be segmented, the medseg
``Volume`` behind an image layer, the run-directory check, Labels layer data from a
:class:`~medseg.predict.CasePrediction`, and the lesion review of instance results
(centre slice, reject / accept), and which earlier result a new one replaces (one result layer
per image and run). :mod:`napari_medseg.segment_widget` is the only Qt.

Geometry follows :mod:`napari_medseg.layers`: a layer's data axes are the stored ``[i, j, k]``
array axes, placed in RAS+ mm by the volume's 4x4 affine kept in ``layer.metadata["affine"]``.
Lesion slices are indices along the stored array's *axial axis* (the array axis closest to
superior-inferior, :func:`axial_axis`), as in medseg's lesion table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputError
from medseg.volume import Volume
from napari_medseg.layers import labels_layer_data

#: Kinds of run, by ``run.json["task"]``, as the widget names them.
TASK_NAMES = {"semantic": "U-Net", "instance": "Mask R-CNN", "nnunet": "nnU-Net"}
#: Lesion decisions shown in the table.
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


# ---- input -------------------------------------------------------------------------------
def has_medseg_geometry(layer) -> bool:
    """An Image layer opened by napari-medseg (3D data with medseg's affine and shape)."""
    md = getattr(layer, "metadata", None) or {}
    if type(layer).__name__ != "Image" or md.get("kind") != "image" or md.get("affine") is None:
        return False
    if getattr(layer, "multiscale", False) or getattr(layer, "rgb", False):
        return False
    return tuple(md.get("shape") or ()) == tuple(np.shape(layer.data))


def image_layers(layers) -> list:
    """The layers of ``layers`` that can be segmented (see :func:`has_medseg_geometry`)."""
    return [lay for lay in layers if has_medseg_geometry(lay)]


def volume_from_layer(layer) -> Volume:
    """The medseg ``Volume`` an image layer shows: its voxels ``[i, j, k]`` (as stored) with the
    voxel -> RAS+ mm affine from ``layer.metadata``, and the reader's provenance in ``meta``.

    Raises:
        InputError: the layer was not opened by napari-medseg, or its data no longer fits
            the recorded grid.
    """
    md = getattr(layer, "metadata", None) or {}
    if md.get("affine") is None or md.get("shape") is None:
        raise InputError(f"layer {layer.name!r} has no medseg geometry; open the scan with "
                         "File > Open with the napari-medseg reader (or `medseg review`)")
    data = np.asarray(layer.data)
    if data.ndim != 3 or tuple(md["shape"]) != data.shape:
        raise InputError(f"layer {layer.name!r} holds data of shape {data.shape} but its medseg grid is "
                         f"{tuple(md['shape'])}; open the scan again")
    meta: dict[str, Any] = {"path": md.get("source_path"), "format": md.get("format")}
    for key in ("modality", "series_uid", "study_uid"):
        if md.get(key):
            meta[key] = md[key]
    return Volume(data, np.asarray(md["affine"], float), meta)


def check_run_dir(path: str | Path) -> tuple[str, str]:
    """Check that ``path`` is a medseg run directory or an nnU-Net results folder; returns
    ``(task, description)`` (the model kind and its class names).

    Raises:
        InputError: with a message that says what is missing and what to give instead.
    """
    from medseg.predict import RunDir

    text = str(path).strip()
    if not text:
        raise InputError("choose a run directory (the --out folder of `medseg train`)")
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; choose the --out folder of `medseg train`")
    if not path.is_dir():
        raise InputError(f"{path} is a file; choose the run folder (the --out folder of `medseg train`)")
    run = RunDir.open(path)
    task = run.task
    if task == "nnunet":  # folds, checkpoints and dataset.json checked; names from dataset.json
        from medseg.predict import describe_run

        labels = describe_run(path)[0]
    else:
        run.checkpoint()  # InputError: no weights yet
        try:
            labels = run.labels
        except InputError:  # the class names are only for show; the prediction reports a broken run
            labels = {}
    names = [n for n, v in sorted(labels.items(), key=lambda nv: nv[1]) if v]
    return task, TASK_NAMES.get(task, task) + (": " + ", ".join(names) if names else "")


# ---- results -------------------------------------------------------------------------------
def is_instance(res) -> bool:
    """An instance result (Mask R-CNN): it comes with a lesion table."""
    return "lesions" in (getattr(res, "tables", None) or {})


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _class_name(value, labels: dict[str, int]) -> str:
    """A lesion's class as a name (rows may hold the name or the class value)."""
    if isinstance(value, str) and not value.isdigit():
        return value
    v = _int(value)
    for name, val in labels.items():
        if val == v:
            return name
    return "" if value is None else str(value)


def axial_axis(affine) -> int:
    """The array axis closest to the superior-inferior world axis (the lesion table's slice
    axis; same rule as :func:`medseg.instance.lesions.axial_axis`)."""
    from medseg.preprocess import canonical_transform

    return int(np.flatnonzero(canonical_transform(np.asarray(affine, float))[:, 0] == 2)[0])


def voxel_volume_ml(affine) -> float:
    """Volume of one voxel in ml (|det| of the affine's 3x3 part, mm^3 / 1000)."""
    return abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0


def lesion_rows(res) -> list[dict]:
    """The lesions of an instance result, one dict per lesion id present in the mask:
    ``id`` (int), ``class`` (name), ``score`` (float or None), ``volume_ml`` (float),
    ``first_slice`` / ``last_slice`` (indices along :func:`axial_axis`). Missing values are
    computed from the mask; a missing or NaN score is None."""
    mask = np.asarray(res.mask.array)
    counts = np.bincount(mask.ravel().astype(np.int64, copy=False)) if mask.size else np.zeros(1, np.int64)
    per_voxel = voxel_volume_ml(res.mask.affine)
    ax = axial_axis(res.mask.affine)
    rows = []
    for raw in res.tables.get("lesions") or []:
        lid = _int(raw.get("id"))
        if lid is None or lid <= 0:
            continue
        n = int(counts[lid]) if lid < counts.size else 0
        first, last = _int(raw.get("first_slice")), _int(raw.get("last_slice"))
        if (first is None or last is None) and n:
            ks = np.flatnonzero((mask == lid).any(axis=tuple(a for a in range(3) if a != ax)))
            first, last = int(ks[0]), int(ks[-1])
        vol = _float(raw.get("volume_ml"))
        score = _float(raw.get("score"))
        rows.append({"id": lid, "class": _class_name(raw.get("class"), res.labels), "score": None if score is None or np.isnan(score) else score,
                     "volume_ml": round(n * per_voxel, 4) if vol is None else vol,
                     "first_slice": first, "last_slice": last})
    return rows


def prediction_layer_data(res, image_layer, name: str | None = None) -> tuple:
    """``(data, kwargs, "labels")`` for a prediction of the scan shown by ``image_layer``.

    The layer gets the image's affine (so it overlays the image exactly), class names and
    colours (U-Net: ``res.labels``; Mask R-CNN: one entry per lesion id, ``"<class> #<id>"``),
    and medseg metadata for the writer: the grid, ``image_path`` (the scan, never
    overwritten), the DICOM series uid, ``model_id`` and ``instance``.

    Raises:
        InputError: the mask is not on the image's grid.
    """
    md = image_layer.metadata or {}
    image_affine = np.asarray(md.get("affine"), float)
    mask = res.mask
    if tuple(mask.shape) != tuple(md.get("shape") or ()) or not np.allclose(mask.affine, image_affine, atol=1e-4):
        raise InputError(f"the prediction's grid {mask.shape} does not match the scan {tuple(md.get('shape') or ())}; "
                         "this is a bug in the predictor, please report it")
    mask = Volume(mask.array, image_affine.copy(), dict(mask.meta))  # exactly the image's placement
    instance = is_instance(res)
    if instance:
        names = {0: "background"}
        for row in lesion_rows(res):
            names[row["id"]] = f"{row['class'] or 'lesion'} #{row['id']}"
    else:
        names = {int(v): str(n) for n, v in sorted(res.labels.items(), key=lambda nv: nv[1])}
        names[0] = names.get(0) or "background"
    data, kwargs, kind = labels_layer_data(mask, path=None, name=name or f"{image_layer.name} prediction",
                                           names=names, image_path=md.get("source_path"))
    meta = kwargs["metadata"]
    for key in ("format", "modality", "series_uid", "study_uid"):
        if md.get(key):
            meta[key] = md[key]
    meta["model_id"] = mask.meta.get("model_id")
    meta["instance"] = instance
    if instance:
        meta["class_labels"] = {str(n): int(v) for n, v in res.labels.items()}
    kwargs["opacity"] = 0.6
    return data, kwargs, kind


# ---- one result layer per image and run ------------------------------------------------------
#: ``layer.metadata`` keys of a Segment result: which image and run made it, and a digest of
#: the voxels as they were added (to tell an untouched result from one a person edited).
RESULT_OF, RESULT_DIGEST = "segment_of", "segment_digest"


def result_key(image_layer, run_dir: str | Path) -> dict:
    """What identifies a Segment result: the scan (its source file and DICOM series, else the
    layer's name) and the resolved run directory. JSON-serialisable (kept in the metadata)."""
    md = getattr(image_layer, "metadata", None) or {}
    image = md.get("source_path") or f"layer:{image_layer.name}"
    if md.get("series_uid"):
        image = f"{image}#{md['series_uid']}"
    return {"image": str(image), "run": str(Path(run_dir).expanduser().resolve())}


def data_digest(data) -> str:
    """A digest of a layer's voxels (shape, dtype and values)."""
    import hashlib

    a = np.ascontiguousarray(np.asarray(data))
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((a.shape, a.dtype.str)).encode())
    h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def previous_result(layers, key: dict):
    """The last Labels layer of ``layers`` that a Segment run made from the same image and run
    (``key``, see :func:`result_key`), or None."""
    found = None
    for lay in layers:
        md = getattr(lay, "metadata", None) or {}
        if type(lay).__name__ == "Labels" and md.get(RESULT_OF) == key:
            found = lay
    return found


def is_untouched(layer) -> bool:
    """Whether a Segment result still holds the voxels it was added with (nobody edited it)."""
    digest = (getattr(layer, "metadata", None) or {}).get(RESULT_DIGEST)
    return digest is not None and digest == data_digest(layer.data)


# ---- lesion review ---------------------------------------------------------------------------
def lesion_centre(mask: np.ndarray, lesion_id: int, axis: int = 2) -> tuple[float, float, float] | None:
    """Voxel coordinates ``(i, j, k)`` of a lesion's centre. Along the slice axis ``axis``
    (see :func:`axial_axis`) it is the slice to show: the lesion's slice nearest its centroid
    (so a curved lesion is still visible, an integer); the other two coordinates are the
    centroid of the lesion on that slice. None when the id is absent."""
    vox = np.argwhere(np.asarray(mask) == lesion_id)
    if vox.size == 0:
        return None
    ks = np.unique(vox[:, axis])
    k = int(ks[np.argmin(np.abs(ks - vox[:, axis].mean()))])
    centre = vox[vox[:, axis] == k].mean(axis=0)
    centre[axis] = k
    return tuple(float(c) for c in centre)


@dataclass
class LesionReview:
    """Accept / reject decisions over the lesions of one instance Labels layer's data.

    ``reject`` returns the voxel indices to set to 0 (the widget writes them with undo history)
    and keeps them, so a later ``accept`` can put the lesion back (on voxels still 0).
    """

    rows: list[dict]
    decisions: dict[int, str] = field(default_factory=dict)
    removed: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in self.rows:
            self.decisions.setdefault(int(row["id"]), PENDING)

    def decision(self, lesion_id: int) -> str:
        return self.decisions.get(int(lesion_id), PENDING)

    def reject(self, data: np.ndarray, lesion_id: int) -> tuple[np.ndarray, ...]:
        """Index arrays of the lesion's voxels in ``data`` (to be set to 0); records the decision."""
        lesion_id = int(lesion_id)
        where = np.nonzero(np.asarray(data) == lesion_id)
        if where[0].size:
            self.removed[lesion_id] = where
        self.decisions[lesion_id] = REJECTED
        return where

    def accept(self, data: np.ndarray, lesion_id: int) -> tuple[np.ndarray, ...]:
        """Index arrays to set back to ``lesion_id`` (a rejected lesion's voxels still 0; empty
        otherwise); records the decision."""
        lesion_id = int(lesion_id)
        where = self.removed.pop(lesion_id, None)
        self.decisions[lesion_id] = ACCEPTED
        if where is None:
            return (np.empty(0, np.intp),) * np.ndim(data)
        free = np.asarray(data)[where] == 0
        return tuple(w[free] for w in where)

    def summary(self) -> dict[str, int]:
        out = {PENDING: 0, ACCEPTED: 0, REJECTED: 0}
        for d in self.decisions.values():
            out[d] = out.get(d, 0) + 1
        return out


# ---- torch inside a process that already renders with OpenGL ----------------------------------
def preload_triton() -> bool:
    """Load Triton's native library (pulled in by ``import monai`` / ``torchvision`` through
    ``torch._dynamo``) with ``RTLD_DEEPBIND``, once, before any model is loaded.

    Why: Triton's ``libtriton.so`` carries its own LLVM. When napari has already drawn with
    Mesa (software rendering under Xvfb, llvmpipe; Mesa drivers that link ``libLLVM``), loading
    ``libtriton`` normally binds its LLVM symbols to Mesa's and the process dies with a
    segmentation fault. Deep binding makes it use its own. Returns True when it was loaded here;
    False when Triton is absent, already imported, or the platform has no ``RTLD_DEEPBIND``.
    Never raises.
    """
    import importlib.util
    import os
    import sys

    if "triton" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return False
    try:
        if importlib.util.find_spec("triton") is None:
            return False
    except (ImportError, ValueError):
        return False
    old = sys.getdlopenflags()
    sys.setdlopenflags(old | os.RTLD_DEEPBIND)
    try:
        import triton._C.libtriton  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 -- a broken Triton install: torch copes without it
        return False
    finally:
        sys.setdlopenflags(old)


# ---- the job the widget runs in a worker thread ---------------------------------------------
@dataclass
class Outcome:
    """What :func:`run_prediction` ended with: ``status`` ``"ok"`` (``result``, ``predictor``),
    ``"cancelled"`` or ``"error"`` (``message``: one line for a person)."""

    status: str
    result: Any = None
    predictor: Any = None
    key: tuple | None = None
    message: str = ""


def run_prediction(load, run_dir: str | Path, device: str, tta: bool, volume: Volume, cancel, progress=None,
                   cached: tuple | None = None) -> Outcome:
    """Load the run (unless ``cached`` = ``(key, predictor)`` matches) and predict ``volume``.

    Never raises for the user's errors or a cancel: every exception becomes an :class:`Outcome`
    (the widget shows it as a line of text, never as a traceback dialog).

    Args:
        load: ``load(run_dir, device=..., tta=...)`` -> predictor (``medseg.predict.load_predictor``).
        cancel: ``threading.Event``; setting it stops the work (:class:`medseg.errors.Cancelled`).
        progress: ``progress(done, total)`` from the predictor, called in the worker thread.
    """
    from medseg.errors import Cancelled, MedsegError, short_reason

    key = (str(Path(run_dir).expanduser().resolve()), device, bool(tta))
    try:
        if cached is not None and cached[0] == key:
            predictor = cached[1]
        else:
            predictor = load(key[0], device=device, tta=bool(tta))
        if cancel.is_set():
            raise Cancelled("prediction cancelled")
        res = predictor.predict([volume], progress=progress, cancel=cancel)
        if cancel.is_set():  # finished just as Cancel was pressed: the user asked for nothing
            raise Cancelled("prediction cancelled")
        return Outcome("ok", res, predictor, key)
    except Cancelled:
        return Outcome("cancelled", message="cancelled; nothing was added")
    except MedsegError as e:
        return Outcome("error", message=str(e))
    except MemoryError:
        return Outcome("error", message="out of memory; try device cpu, or close other programs")
    except Exception as e:  # noqa: BLE001 -- a bug or an environment problem: one line, not a dialog
        name = type(e).__name__
        if "OutOfMemory" in name:
            return Outcome("error", message="out of GPU memory; choose device cpu or free the GPU")
        return Outcome("error", message=f"prediction failed ({name}: {short_reason(e)})")
