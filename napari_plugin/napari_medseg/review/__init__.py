"""Review a folder of masks: worklist, statuses, corrections, audit log, export.

``cases``, ``state`` and ``export`` are plain Python (no Qt); ``widget`` is the napari dock widget.
"""

# The review logic lives in medseg (napari-free, shared with `medseg review --export`); the plugin
# re-exports it so plugin code keeps importing from here.
from medseg.review import *  # noqa: F401,F403
from medseg.review import __all__  # noqa: F401
