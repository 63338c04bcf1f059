"""Batch segmentation of study folders: ``predict_folder(RUN_DIR, INPUTS, OUT_DIR)``.

* The model is loaded once; the next case is read (in a thread) while the current one computes.
* ``OUT_DIR/manifest.csv`` gets one row per case, rewritten atomically after each case.
* A failing case is recorded as ``failed`` and the batch goes on -- whatever it raises, path
  resolution included.
* Ownership: OUT_DIR is identified by its ``manifest.csv``. Files there that no manifest row
  accounts for are never replaced without ``overwrite``; inputs (and anything inside an input
  folder) never are; ``out`` inside an input folder is refused. ``labels.json`` is the batch's.
* ``resume=True`` skips cases already done with the same model id; outputs are atomic, so a
  Ctrl-C or a kill leaves no half-written file, and the next ``--resume`` run continues.
* ``engine="ray"`` spreads the cases over a Ray cluster (:mod:`medseg.predict.ray_engine`)
  and writes the same files.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError, OutputError
from medseg.io.atomic import clean_stale_temps
from medseg.predict.case import read_case, run_case
from medseg.predict.inputs import FORMATS, CaseInput, find_cases, safe_resolve
from medseg.predict.manifest import Manifest


@dataclass
class BatchSummary:
    """Counts of one batch and the manifest path; ``failed_cases`` as (case, error)."""

    out_dir: Path
    manifest: Path
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed_cases: list[tuple[str, str]] = field(default_factory=list)


class _Reporter:
    """A rich bar over cases (+ one over the windows of the current case) on a TTY; one line per
    case otherwise."""

    def __init__(self, total: int, enabled: bool):
        from rich.console import Console

        self.console = Console(file=sys.stderr)
        self.total, self.n = total, 0
        self.t0 = time.perf_counter()
        self.prog = None
        if enabled and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[label]}"), console=self.console)
            self.prog.start()
            self.cases = self.prog.add_task("cases", total=total, label="")
            self.windows = self.prog.add_task("  windows", total=1, label="", visible=False)
        self.enabled = enabled

    def windows_progress(self, key: str):
        if self.prog is None:
            return None
        self.prog.reset(self.windows, total=1, label=key, visible=True)

        def update(done: int, total: int) -> None:
            self.prog.update(self.windows, completed=done, total=total)

        return update

    def case_done(self, row: dict) -> None:
        self.n += 1
        status = row["status"] + (f": {row['error']}" if row.get("error") else "")
        if self.prog is not None:
            self.prog.update(self.cases, advance=1, label=f"{row['case']} {row['status']}")
            if row["status"] == "failed":
                self.prog.console.print(f"[red]failed[/red] {row['case']}: {row['error']}")
        elif self.enabled:  # a log: one plain line per case, with the batch's rate and ETA
            from medseg.progress_lines import format_eta

            secs = f" ({float(row.get('seconds') or 0):.1f} s)" if row["status"] == "done" else ""
            elapsed = max(time.perf_counter() - self.t0, 1e-9)
            rate = self.n / elapsed * 60
            eta = format_eta((self.total - self.n) * elapsed / self.n)
            self.console.print(f"[{self.n}/{self.total}] {row['case']}: {status}{secs}; {rate:.1f} cases/min, "
                               f"ETA {eta}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.prog is not None:
            self.prog.stop()


def _clean_stale_temps(out_dir: Path) -> None:
    """Remove temporary files and folders a killed run left behind (see :func:`clean_stale_temps`)."""
    clean_stale_temps(out_dir, recursive=True)


#: Files of OUT_DIR that belong to the batch itself (the manifest identifies a prediction folder).
BATCH_FILES = ("manifest.csv", "labels.json")


def check_out_dir(out_dir: Path, inputs: list[str | Path]) -> None:
    """Refuse an OUT_DIR that is a file, or that is (or lies inside) an input folder -- masks
    written there would mix with the scans, and the next run would take them for inputs."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the masks")
    out = safe_resolve(out_dir)
    for raw in inputs:
        inp = Path(raw)
        if inp.is_dir() and (out == safe_resolve(inp) or out.is_relative_to(safe_resolve(inp))):
            raise OutputError(f"--out {out_dir} is inside the input folder {inp}; medseg does not write into its "
                              "inputs -- choose an output folder outside it")


def _input_places(cases: list[CaseInput]) -> tuple[set[Path], list[Path]]:
    """(input files, input folders) of ``cases``, resolved: outputs may never land there."""
    files, folders = set(), []
    for c in cases:
        for p in c.sources:
            r = safe_resolve(p)
            (folders.append(r) if c.is_dicom or r.is_dir() else files.add(r))
    return files, folders


def _check_outputs(out_dir: Path, cases: list[CaseInput], all_cases: list[CaseInput], fmt: str, uncertainty: bool,
                   owned: set[str], has_manifest: bool, overwrite: bool, tables: tuple[str, ...] = ()) -> None:
    """Every writer writes only what it owns: refuse to replace inputs (ever) and files medseg did
    not write (without ``overwrite``). Files of cases in OUT_DIR's manifest are medseg's."""
    files, folders = _input_places(all_cases)
    foreign: list[Path] = []
    planned = [(c.key, p) for c in cases for p in c.outputs(out_dir, fmt, uncertainty, tables)]
    planned += [(None, out_dir / name) for name in BATCH_FILES]
    for key, path in planned:
        r = safe_resolve(path)
        if r in files or any(r == d or r.is_relative_to(d) for d in folders):
            raise OutputError(f"the output {path} would replace an input ({r}); medseg never writes over its "
                              "inputs -- choose another --out")
        if not (path.exists() or path.is_symlink()) or overwrite:
            continue
        if (key is None and has_manifest) or (key is not None and key in owned):
            continue
        foreign.append(path)
    if foreign:
        names = ", ".join(str(p) for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(f"{names} already exist{'s' if len(foreign) == 1 else ''} and were not written by a medseg "
                          f"batch in {out_dir} (no manifest row); move them away, choose another --out, or pass "
                          "--overwrite to replace them")


def prepare_batch(out_dir: Path, cases: list[CaseInput], class_names: list[str], model_id: str,
                  resume: bool, overwrite: bool, *, fmt: str = "nifti", uncertainty: bool = False,
                  tables: tuple[str, ...] = ()) -> tuple[Manifest, list[CaseInput], list[CaseInput]]:
    """Check OUT_DIR against resume/overwrite and file ownership; returns (manifest, cases to
    run, cases to skip). ``tables``: the per-case CSV tables the model writes (they are outputs
    too). Nothing is written before every check has passed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the masks")
    manifest_path = out_dir / "manifest.csv"
    has_manifest = manifest_path.is_file()
    if has_manifest and not (resume or overwrite):
        raise InputError(f"{out_dir} already holds a batch (manifest.csv); pass --resume to continue it "
                         "(cases done with this model are skipped), or --overwrite to redo every case")
    old = Manifest.load(manifest_path, class_names) if has_manifest and resume else None
    owned = set(old.rows) if old is not None else set()
    manifest = old if old is not None else Manifest(manifest_path, class_names)
    todo, skip = [], []
    for c in cases:
        (skip if resume and manifest.is_done(c.key, model_id, out_dir) else todo).append(c)
    _check_outputs(out_dir, todo, cases, fmt, uncertainty, owned, has_manifest, overwrite, tables)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(out_dir)
    for c in skip:
        manifest.set({**manifest.rows[c.key], "status": "skipped", "error": ""})
    return manifest, todo, skip


def write_output_labels(out_dir: Path, model: str | Path, labels: dict[str, int]) -> None:
    """``OUT/labels.json``: the run's class names and colours next to the manifest, so every reader
    of the folder (napari, review, report, export) names classes as the run did. ``map`` says
    whether the masks are label maps (``label``: values are the classes) or instance maps
    (``instance``: one id per object)."""
    from medseg.io.labels import LabelTable, read_labels, write_labels

    try:
        run = read_labels(model) if Path(model).is_dir() else None
    except InputError:
        run = None
    colors = run.colors if run is not None and run.labels == labels else {}
    try:
        from medseg.predict.registry import run_task

        task = run_task(model)
    except InputError:
        task = "semantic"
    # instance runs write instance maps (one id per lesion; the lesion table names the class)
    write_labels(out_dir, LabelTable(labels, colors, source=str(Path(model).resolve())),
                 {"map": "instance" if task == "instance" else "label"})


def _model_tables(model) -> tuple[str, ...]:
    """The per-case tables the run ``model`` writes (its task's ``tables``; none if unknown)."""
    from medseg.model.tasks import get_task
    from medseg.predict.registry import run_task

    try:
        return get_task(run_task(model)).tables
    except InputError:
        return ()


def predict_folder(model: str | Path, inputs: list[str | Path], out: str | Path, *, device: str = "auto",
                   tta: bool | None = None, overlap: float | None = None, fmt: str = "nifti", uncertainty: bool = False,
                   resume: bool = False, overwrite: bool = False, engine: str = "local", address: str | None = None,
                   workers: int | None = None, organ_model: str | Path | None = None, progress: bool = True,
                   folds: list[str] | None = None) -> BatchSummary:
    """Segment every case under ``inputs`` with the run ``model`` (a medseg run directory or an
    nnU-Net results folder, whose ``folds`` to ensemble may be given); see the module docstring.

    Returns the :class:`BatchSummary`. Raises ``InputError`` for problems with the whole batch
    (bad model folder, no inputs, OUT_DIR already used); per-case problems are rows, not errors.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine}: choose local or ray")
    out_dir = Path(out)
    check_out_dir(out_dir, inputs)
    t0 = time.perf_counter()
    options = dict(device=device, tta=tta, overlap=overlap, organ_model=organ_model)
    if folds:
        from medseg.predict.registry import run_task

        if run_task(model) != "nnunet":
            raise InputError(f"--folds: {model} is a medseg run (one model); folds are chosen in nnU-Net model folders")
        options["folds"] = list(folds)
    pool = None
    if engine == "ray":
        from medseg.predict.ray_engine import RayPool

        pool = RayPool(model, options, address=address, workers=workers)
        labels, model_id, n_channels = pool.labels, pool.model_id, pool.n_channels
    else:
        from medseg.predict.registry import load_predictor

        predictor = load_predictor(model, **options)
        labels, model_id = predictor.labels, predictor.model_id
        n_channels = predictor.n_channels
    try:
        cases = find_cases(inputs, n_channels, out_dir)
        class_names = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v != 0]
        manifest, todo, skip = prepare_batch(out_dir, cases, class_names, model_id, resume, overwrite, fmt=fmt,
                                             uncertainty=uncertainty, tables=_model_tables(model))
    except BaseException:
        if pool is not None:
            pool.shutdown()
        raise
    summary = BatchSummary(out_dir, manifest.path, skipped=len(skip))
    manifest.save()
    write_output_labels(out_dir, model, labels)
    if skip:
        print(f"note: {len(skip)} of {len(cases)} cases already done with model {model_id}; skipped", file=sys.stderr)
    rep = _Reporter(len(todo), progress)

    def record(row: dict) -> None:
        manifest.set(row)
        manifest.save()
        if row["status"] == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failed_cases.append((row["case"], row["error"]))
        rep.case_done(row)

    try:
        if engine == "ray":
            pool.run(todo, out_dir, fmt, uncertainty, record)
        else:
            _run_local(predictor, todo, out_dir, fmt, uncertainty, record, rep)
    finally:
        rep.close()
        if engine == "ray":
            pool.shutdown()
    summary.seconds = time.perf_counter() - t0
    return summary


def _read_timed(case: CaseInput):
    t = time.perf_counter()
    try:
        return read_case(case), None, time.perf_counter() - t
    except Exception as e:  # noqa: BLE001 -- recorded as the case's failure
        return None, e, time.perf_counter() - t


def _run_local(predictor, cases: list[CaseInput], out_dir: Path, fmt: str, uncertainty: bool, record, rep) -> None:
    """Cases in order; case i+1 is read in a thread while case i computes."""
    if not cases:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-read") as pool:
        nxt = pool.submit(_read_timed, cases[0])
        for i, case in enumerate(cases):
            channels, err, secs = nxt.result()
            if i + 1 < len(cases):
                nxt = pool.submit(_read_timed, cases[i + 1])
            row = run_case(predictor, case, out_dir, fmt, uncertainty, channels=channels, read_error=err,
                           read_seconds=secs, progress=rep.windows_progress(case.key))
            del channels
            record(row)
