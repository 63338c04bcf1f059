"""The tri-planar layout's Qt part: the coronal and sagittal views docked under napari's main
(axial) view. The models, the mirrored layers and the linked point are
:class:`napari_medseg.triplanar.LinkedViews` (no Qt); this module only renders its side models
with napari's ``QtViewer`` (canvas and slider) and docks them.

:func:`open_views` docks the views; :meth:`TriPlanarWidget.close_views` (also run when napari's
close button of the dock takes the widget out) disconnects everything and closes the side
canvases. The dock cannot float: a floating window would need OpenGL contexts shared with the
main window's, which napari does not set up (the side canvases fail to draw, and the process
aborts).
"""

from __future__ import annotations

import numpy as np
from napari.qt import QtViewer
from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtWidgets import QDockWidget, QLabel, QMainWindow, QSplitter, QVBoxLayout, QWidget

from napari_medseg.triplanar import LinkedViews

DOCK_NAME = "medseg views"
#: The share of the window's height the docked side views get when they open.
DOCK_HEIGHT = 0.4
#: What each side view's title says about its orientation.
CAPTIONS = {"coronal": "coronal (patient's left on the right, superior up)",
            "sagittal": "sagittal (anterior on the left, superior up)"}


class TriPlanarWidget(QSplitter):
    """The side views of :class:`~napari_medseg.triplanar.LinkedViews` side by side.

    Attributes:
        links: the linked models (None once closed).
        qt_viewers: ``{plane name: QtViewer}`` ({} once closed).
    """

    #: Emitted once, when the views are closed.
    closed = Signal()

    def __init__(self, viewer, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.links: LinkedViews | None = LinkedViews(viewer)
        self.qt_viewers = {name: QtViewer(model) for name, model in self.links.models.items()}
        for name, qt_viewer in self.qt_viewers.items():
            pane = QWidget()
            layout = QVBoxLayout(pane)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(QLabel(CAPTIONS.get(name, name)))
            layout.addWidget(qt_viewer, stretch=1)
            self.addWidget(pane)

    def screenshot(self, name: str) -> np.ndarray:
        """``(h, w, 4)`` uint8 rendering of one side view's canvas (``"coronal"``, ``"sagittal"``)."""
        return self.qt_viewers[name].screenshot(flash=False)

    def close_views(self) -> None:
        """Disconnect the side views from the main viewer, close their canvases and take the
        widget out of its dock (safe to call again)."""
        if self.links is None:
            return
        links, self.links = self.links, None
        links.close()
        viewers, self.qt_viewers = self.qt_viewers, {}
        try:
            self.closed.emit()
            for qt_viewer in viewers.values():
                qt_viewer.close()
            if self.parent() is not None:
                links.viewer.window.remove_dock_widget(self)
            self.deleteLater()
        except (LookupError, RuntimeError):  # napari's window (or the dock) is already gone
            pass

    def event(self, event) -> bool:  # noqa: D102 (Qt override)
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.close_views()  # napari's close button of the dock took the widget out
        return super().event(event)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.close_views()
        super().closeEvent(event)


def open_views(viewer) -> TriPlanarWidget:
    """Dock the coronal and sagittal views, linked to ``viewer`` (a napari ``Viewer``), under
    its canvas, :data:`DOCK_HEIGHT` of the window high; returns the widget (``close_views()``
    undocks it). The window's bottom corners are given to the left and right dock areas, so the
    views sit between napari's layer list and the review docks."""
    widget = TriPlanarWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name=DOCK_NAME, area="bottom")
    dock.setFeatures(dock.features() & ~QDockWidget.DockWidgetFeature.DockWidgetFloatable)  # drag, double click
    _hide_float_button(dock)
    dock.dockLocationChanged.connect(lambda _area: _hide_float_button(dock))  # napari rebuilds its title bar
    window = dock.parentWidget()
    if isinstance(window, QMainWindow):
        # the side docks keep the window's full height: the views go under the canvas only
        window.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        window.resizeDocks([dock], [int(window.height() * DOCK_HEIGHT)], Qt.Orientation.Vertical)
    return widget


def _hide_float_button(dock) -> None:
    """Hide the float button of napari's dock title bar: it floats a dock whatever the dock's
    features say."""
    button = getattr(getattr(dock, "title", None), "float_button", None)
    if button is not None:
        button.hide()
