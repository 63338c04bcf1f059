"""Screenshots of the bundled chest CT and its segmentation for the README.

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python napari_plugin/scripts/screenshots.py [--out docs/images]

Writes ``review_2d.png`` (radiological axial slice through the lungs: patient's right on the
image's left, anterior at the top, lung window, labels overlaid), ``review_3d.png`` (the 7
labels rendered in 3D, seen from the front with the head up), and two pictures of the review
station on the sample as a one-case review folder: ``review_triplanar.png`` (the worklist and
the axial, coronal and sagittal views, linked, through the right lung) and
``review_edit_inside.png`` (a "tumour" class painted across the edge of the right lung with the
editable area *inside right lung* and overwrite off: only lung voxels took it). Needs a
display: run it under Xvfb (napari's first canvas screenshot is black without a shown window).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _process_events(n: int = 5) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(n):
        QApplication.processEvents()


def front_view(viewer, turn_deg: float = 0.0, from_above_deg: float = 0.0) -> tuple[tuple, tuple]:
    """(view direction, up direction) in scene coordinates (the displayed world axes, in
    ``viewer.dims.displayed`` order) to look at the patient from the front (anterior to
    posterior) with the head up; ``turn_deg`` moves the camera towards the patient's left,
    ``from_above_deg`` raises it."""
    t, e = np.radians(turn_deg), np.radians(from_above_deg)
    xyz = np.array([np.sin(t) * np.cos(e), -np.cos(t) * np.cos(e), -np.sin(e)])  # RAS+ direction
    displayed = list(viewer.dims.displayed)
    view = tuple(float(xyz[axis]) for axis in displayed)
    up = tuple(1.0 if axis == 2 else 0.0 for axis in displayed)  # superior (+z) up
    return view, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="output folder")
    parser.add_argument("--size", type=int, nargs=2, default=(900, 760), help="canvas width height (pixels)")
    args = parser.parse_args(argv)

    import napari

    from napari_medseg.correction import preset_limits
    from napari_medseg.view import camera, go_to_world, radiological_axial_view

    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="medseg review")
    viewer.window.resize(args.size[0] + 320, args.size[1] + 120)
    ct, seg = viewer.open_sample("napari-medseg", "ct_chest")
    viewer.window._qt_viewer.canvas.size = tuple(args.size[::-1])  # noqa: SLF001 (no public size API)

    # 2D: radiological axial view through the middle of the lungs (labels 5 and 6)
    radiological_axial_view(viewer)
    ct.contrast_limits = preset_limits("lung")
    seg.opacity = 0.45
    lungs = np.argwhere(np.isin(seg.data, (5, 6))).mean(axis=0)
    viewer.reset_view()
    go_to_world(viewer, seg.data_to_world(tuple(lungs)))
    _process_events()
    viewer.screenshot(str(args.out / "review_2d.png"), canvas_only=True, flash=False)

    # 3D: the labels as surfaces (the body outline 'tissue' and the CT hidden), seen from the
    # front with the head up: the patient's right on the image's left, as when facing the patient
    viewer.dims.ndisplay = 3
    ct.visible = False
    seg.opacity = 1.0
    colors = dict(seg.colormap.color_dict)
    tissue = next(v for v, n in seg.metadata["classes"].items() if n == "tissue")
    colors[tissue] = np.zeros(4)
    seg.colormap = colors
    viewer.reset_view()
    camera(viewer).set_view_direction(*front_view(viewer, turn_deg=30, from_above_deg=15))
    camera(viewer).zoom *= 0.95
    _process_events()
    viewer.screenshot(str(args.out / "review_3d.png"), canvas_only=True, flash=False)
    viewer.close()
    written = [args.out / "review_2d.png", args.out / "review_3d.png", *review_station(args.out)]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def review_station(out: Path, size: tuple[int, int] = (1560, 1140)) -> list[Path]:
    """``review_triplanar.png`` and ``review_edit_inside.png``: the sample CT and its
    segmentation as a one-case review folder, in the review station (``open_review``) with the
    three views; returns the paths written."""
    import napari

    from napari_medseg import open_review
    from napari_medseg.app import TOOLS_DOCK
    from napari_medseg.correction import WINDOW_PRESETS
    from napari_medseg.samples import CT_CHEST, CT_CHEST_SEG, samples_dir
    from napari_medseg.view import camera

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "chest"
        for sub, src, name in (("images", CT_CHEST, "chest.nrrd"), ("masks", CT_CHEST_SEG, "chest.seg.nrrd")):
            (folder / sub).mkdir(parents=True)
            shutil.copy(samples_dir().joinpath(*src), folder / sub / name)
        viewer = napari.Viewer(show=True, title="medseg review")
        viewer.window.resize(*size)
        review = open_review(folder, viewer=viewer, reviewer="Dr A")
        seg = review.open_case("chest")
        tools = viewer.window.dock_widgets[TOOLS_DOCK]
        tools.preset_box.setCurrentIndex(list(WINDOW_PRESETS).index("lung"))
        tools.apply_window()
        seg.opacity = 0.4
        review.show_views(True)
        _process_events(10)
        lung = _value_of(seg, "right lung")
        centre = np.argwhere(np.asarray(seg.data) == lung).mean(axis=0)
        review.views.links.set_point(seg.data_to_world(tuple(centre)))
        _process_events(10)
        paths = [out / "review_triplanar.png", out / "review_edit_inside.png"]
        viewer.screenshot(str(paths[0]), canvas_only=False, flash=False)

        tools.add_class("tumour")
        tools.set_rules("inside", lung, overwrite=False)
        edge = _paint_across_edge(seg, lung, int(round(centre[2])))
        review.views.links.set_point(seg.data_to_world(edge))
        camera(viewer).center = tuple(seg.data_to_world(edge)[a] for a in viewer.dims.displayed)
        camera(viewer).zoom *= 2.0
        _process_events(10)
        viewer.screenshot(str(paths[1]), canvas_only=False, flash=False)
        review.close_session()
        viewer.close()
    return paths


def _value_of(labels, name: str) -> int:
    return next(int(v) for v, n in labels.metadata["classes"].items() if n == name)


def _paint_across_edge(labels, organ: int, k: int) -> tuple[int, int, int]:
    """Round brush strokes (as napari's mouse makes them: dabs in one undo step) on axial slices
    ``k - 1 .. k + 1``, centred on the lateral edge (towards +i) of ``organ``, so half of each
    lies in the chest wall, with the layer's selected label. Returns the edge voxel on slice ``k``."""
    inside = np.asarray(labels.data[:, :, k]) == organ
    j = int(round(np.argwhere(inside)[:, 1].mean()))
    i_edge = int(np.flatnonzero(inside[:, j]).max())
    for dk, size in ((-1, 9), (0, 14), (1, 9)):
        labels.brush_size = size
        with labels.block_history():
            for di, dj in ((-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)):
                labels.paint((i_edge + di, j + dj, k + dk), labels.selected_label, refresh=False)
        labels.refresh()
    return i_edge, j, k


if __name__ == "__main__":
    raise SystemExit(main())
