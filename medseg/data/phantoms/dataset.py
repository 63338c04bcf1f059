"""Write a phantom dataset in the nnU-Net v2 raw layout (plus an optional DICOM study tree).

::

    OUT_DIR/dataset.json                       written last, atomically
    OUT_DIR/imagesTr/phantom_000_0000.nii.gz   int16 HU
    OUT_DIR/labelsTr/phantom_000.nii.gz        uint8 labels on exactly the image grid
    OUT_DIR/dicom_study/...                    with dicom_study=True (see dicom_study.py)
    OUT_DIR/.medseg_phantoms.json              generator options and a summary of each finished case

Resuming: the hidden state file is written first and updated after each case. Running again
with the same seed and size skips the cases already finished and adds missing ones (more
``cases``, or ``dicom_study`` switched on). A non-empty folder that is not a phantom dataset,
or one made with another seed, size or generator version, is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from medseg.data.phantoms.anatomy import FAMILIES, FAMILY_LABELS, SIZES
from medseg.data.phantoms.dicom_study import dicom_label_path, is_dicom_case, write_dicom_case
from medseg.data.phantoms.generate import PHANTOM_VERSION, generate_case
from medseg.data.nnunet_writer import dataset_meta, write_case, write_dataset_json
from medseg.errors import InputError, OutputError
from medseg.io.atomic import write_text_atomic

STATE_NAME = ".medseg_phantoms.json"
DATASET_NAME = "MedsegPhantoms"

#: ``progress(done, total, summary)``: called after each case, finished now or before (resumed).
Progress = Callable[[int, int, dict], None]


def case_id(index: int) -> str:
    """``phantom_000``, ``phantom_001``, ... (the nnU-Net case identifier)."""
    return f"phantom_{index:03d}"


def _write_json(path: Path, data: dict) -> None:
    """Atomic JSON write (medseg.io.atomic)."""
    try:
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e}); check the folder and free disk space") from e


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _params(seed: int, size: str, family: str = "abdomen") -> dict:
    """The generator options that define the cases (``family`` only when not the default, so
    that datasets written before families existed keep their identity)."""
    out = {"seed": seed, "size": size, "version": PHANTOM_VERSION}
    if family != "abdomen":
        out["family"] = family
    return out


def _open_state(out: Path, seed: int, size: str, cases: int, family: str = "abdomen") -> dict:
    """Load (resume) or create the state; refuse folders that are not this phantom dataset."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; give a folder for the phantom dataset")
    want = {**_params(seed, size), "family": family}
    state = None
    if (out / STATE_NAME).is_file():
        state = _read_json(out / STATE_NAME)
    elif out.is_dir() and any(out.iterdir()):
        previous = (_read_json(out / "dataset.json") or {}).get("medseg_phantoms")
        if not isinstance(previous, dict):
            raise OutputError(
                f"{out} is not empty and is not a phantom dataset written by medseg; "
                "choose a new or empty folder"
            )
        state = {**previous, "cases": {}}  # state file lost: redo every case
    if state is None:
        state = {"generator": "medseg phantoms", **_params(seed, size, family), "cases": {}}
    have = {k: state.get(k) for k in want}
    have["family"] = have["family"] or "abdomen"
    if have != want:
        raise OutputError(
            f"{out} holds phantoms made with --seed {have['seed']} --size {have['size']}"
            + (f" --family {have['family']}" if have["family"] != "abdomen" else "") + " "
            f"(generator version {have['version']}); rerun with those options to resume, or choose an empty folder"
        )
    done = state.setdefault("cases", {})
    extra = sorted(c for c, s in done.items() if int(s.get("index", 0)) >= cases)
    if extra:
        raise OutputError(
            f"{out} already holds {len(done)} phantom cases (up to {extra[-1]}); ask for at least "
            f"--cases {max(int(s['index']) for s in done.values()) + 1}, or choose an empty folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out} ({e.strerror or e}); choose a writable folder") from e
    _write_json(out / STATE_NAME, state)
    return state


def _summary(info: dict, dicom: bool) -> dict:
    keys = ("index", "shape", "spacing", "orientation", "oblique_deg", "contrast", "n_tumours")
    return {**{k: info[k] for k in keys}, "dicom": dicom}


def _complete(out: Path, cid: str, summary: dict | None, want_dicom: bool) -> bool:
    if summary is None:
        return False
    files = [out / "imagesTr" / f"{cid}_0000.nii.gz", out / "labelsTr" / f"{cid}.nii.gz"]
    if want_dicom:
        if not summary.get("dicom"):
            return False
        files.append(dicom_label_path(out / "dicom_study", cid))
    return all(f.is_file() for f in files)


def dataset_json(cases: int, seed: int, size: str, family: str = "abdomen") -> dict:
    """The nnU-Net v2 ``dataset.json`` content for a phantom dataset."""
    what = ("liver, spleen, kidneys and 0-3 liver/kidney tumours" if family == "abdomen" else
            "liver with 1-6 metastases, spleen, kidneys")
    return dataset_meta(
        DATASET_NAME, {"0": "CT"}, dict(FAMILY_LABELS[family]), cases,
        description=f"Synthetic abdominal CT phantoms (medseg phantoms, size {size}, seed {seed}"
        + (f", family {family}" if family != "abdomen" else "") + f"): {what}; random spacing and storage orientation.",
        licence="CC0 (synthetic)", medseg_phantoms=_params(seed, size, family))


def validate_options(cases: int, seed: int, size: str, family: str = "abdomen") -> None:
    """Raise InputError (with advice) for impossible options."""
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise InputError(f"the number of cases must be a positive integer, got {cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"the seed must be a non-negative integer, got {seed!r}")
    if size not in SIZES:
        raise InputError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


def write_phantom_dataset(out_dir: str | Path, cases: int = 10, seed: int = 0, size: str = "small",
                          dicom_study: bool = False, *, progress: Progress | None = None,
                          family: str = "abdomen") -> Path:
    """Generate ``cases`` phantoms into ``out_dir`` (nnU-Net v2 raw layout); returns ``out_dir``.

    Case ``i`` is ``generate_case(seed, size, i, family)`` (``family``: ``abdomen``, the
    default, or ``metastases``: liver metastases labelled ``metastasis``). With ``dicom_study``, cases 0, 3, 6, ...
    are also written as DICOM series (see :mod:`medseg.data.phantoms.dicom_study`).

    Raises:
        InputError: invalid options. OutputError: ``out_dir`` is a non-empty folder that is not
            a phantom dataset with the same seed/size, holds more cases than asked, or cannot
            be written.
    """
    validate_options(cases, seed, size, family)
    out = Path(out_dir)
    state = _open_state(out, seed, size, cases, family)
    for index in range(cases):
        cid = case_id(index)
        want_dicom = dicom_study and is_dicom_case(index)
        summary = state["cases"].get(cid)
        if not _complete(out, cid, summary, want_dicom):
            image, label, info = generate_case(seed, size, index, family)
            write_case(out, cid, [image], label)
            dicom = bool(summary and summary.get("dicom"))
            if want_dicom:
                write_dicom_case(out / "dicom_study", cid, [seed, size, PHANTOM_VERSION, index], image, label,
                                 second_series=index == 0)
                dicom = True
            summary = state["cases"][cid] = _summary(info, dicom)
            _write_json(out / STATE_NAME, state)
        if progress is not None:
            progress(index + 1, cases, {"case": cid, **summary})
    write_dataset_json(out, dataset_json(cases, seed, size, family))
    return out
