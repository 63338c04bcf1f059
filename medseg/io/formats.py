"""Which reader/writer handles a path: by suffix, then by sniffing for DICOM."""

from __future__ import annotations

from pathlib import Path

from medseg.errors import InputError, OutputError

#: suffix (lower case) -> format name, longest suffixes first.
READ_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".seg.nrrd": "nrrd",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}

WRITE_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".seg.nrrd": "nrrd",
    ".nrrd": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}

SUPPORTED_TEXT = ".nii / .nii.gz (NIfTI), .nrrd / .nhdr, .mha / .mhd, or DICOM (a file or a folder)"


def split_suffix(path: str | Path, table: dict[str, str] = READ_SUFFIXES) -> tuple[str, str]:
    """Return ``(stem, suffix)`` where suffix is the longest known one (lower case) or ''.

    ``case_01.nii.gz`` -> ``("case_01", ".nii.gz")``; ``a.seg.nrrd`` -> ``("a", ".seg.nrrd")``.
    """
    name = Path(path).name
    low = name.lower()
    for suf in sorted(table, key=len, reverse=True):
        if low.endswith(suf) and len(low) > len(suf):
            return name[: -len(suf)], suf
    return name, ""


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def input_format(path: Path) -> str:
    """Name the reader for an existing path: nifti, nrrd, metaimage or dicom.

    Raises:
        InputError: the file is neither a known suffix nor DICOM.
    """
    if path.is_dir():
        return "dicom"
    _, suffix = split_suffix(path)
    if suffix:
        return READ_SUFFIXES[suffix]
    if is_dicom_file(path) or path.suffix.lower() in (".dcm", ".ima", ".dicom"):
        return "dicom"
    raise InputError(
        f"{path} is not a supported image (suffix {path.suffix or 'none'!r} and no DICOM header); "
        f"medseg reads {SUPPORTED_TEXT}"
    )


def output_format(path: Path) -> str:
    """Name the writer for an output path by its suffix.

    Raises:
        OutputError: unknown suffix; the message lists the supported ones.
    """
    _, suffix = split_suffix(path, WRITE_SUFFIXES)
    if not suffix:
        raise OutputError(
            f"cannot write {path.name!r}: unknown output suffix; "
            "use .nii.gz, .nii, .nrrd, .seg.nrrd, .mha or .mhd"
        )
    return WRITE_SUFFIXES[suffix]
