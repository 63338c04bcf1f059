"""``python -m medseg`` is the ``medseg`` command."""

from medseg.cli.main import main

raise SystemExit(main())
