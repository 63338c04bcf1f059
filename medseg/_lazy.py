"""The one lazy-import helper: a package's public names imported on first use (PEP 562).

Keeps ``import medseg`` and the CLI start-up free of torch::

    from medseg._lazy import lazy_exports

    __all__ = ["Predictor", "load_predictor"]
    __getattr__, __dir__ = lazy_exports(__name__, {
        "Predictor": "medseg.predict.predictor:Predictor",      # "module:attribute"
        "load_predictor": "medseg.predict.registry:load_predictor",
    })

The table is plain data in the module that owns it, so ``tests/test_architecture.py`` reads its
targets as imports of that module (a lazy import is still a dependency).

:func:`callable_module` is the one other module trick medseg uses: ``medseg.train(...)`` calls the
training dispatcher although ``medseg.train`` is a package.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable


def lazy_exports(module_name: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for module ``module_name``: ``exports`` maps a public name to
    ``"package.module:attribute"`` (or ``"package.module"`` for a module), imported on first
    access and then cached in the module's namespace."""

    def __getattr__(name: str):
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        value = importlib.import_module(module)
        if attr:
            value = getattr(value, attr)
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module_name])) | set(exports))

    return __getattr__, __dir__


def callable_module(module_name: str, function: Callable) -> None:
    """Make the module ``module_name`` callable: ``module(...)`` calls ``function(...)``.

    Setting a module's ``__class__`` to a `types.ModuleType` subclass is the documented way to
    customise a module beyond PEP 562 (Python reference, "Customizing module attribute access").
    """

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
