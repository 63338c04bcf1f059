"""Screenshots of the bundled chest CT and its segmentation for the README.

    xvfb-run -a .venv/bin/python napari_plugin/scripts/screenshots.py [--out docs/images]

Writes ``review_2d.png`` (radiological axial slice through the lungs: patient's right on the
image's left, anterior at the top, lung window, labels overlaid) and ``review_3d.png``
(the 7 labels rendered in 3D, seen from the front with the head up). Needs a display:
run it under Xvfb (napari's first canvas screenshot is black without a shown window).
"""

from __future__ import annotations

import argparse
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
    print(f"wrote {args.out / 'review_2d.png'} and {args.out / 'review_3d.png'}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
