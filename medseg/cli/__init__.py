"""The ``medseg`` command line (one module per command; :mod:`medseg.cli.main` dispatches)."""
