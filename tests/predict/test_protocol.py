"""Every model kind's predictor implements the predictor contract explicitly, with the contract's
keywords and defaults and no catch-all ``**kwargs`` (an option a kind does not know is an error,
not silently dropped)."""

from __future__ import annotations

import inspect

import pytest

import medseg  # noqa: F401 -- the facade registers the model kinds
from medseg.model.tasks import TASKS
from medseg.predict.protocol import PredictorProtocol


def _params(fn) -> dict[str, inspect.Parameter]:
    return dict(list(inspect.signature(fn).parameters.items())[1:])  # without cls / self


@pytest.mark.parametrize("task", ["semantic", "instance"])
def test_predictor_implements_the_protocol(task):
    cls = TASKS[task].predictor()
    assert PredictorProtocol in cls.__mro__, f"{cls.__name__} must subclass PredictorProtocol"
    for name in ("from_run", "predict"):
        want, got = _params(getattr(PredictorProtocol, name)), _params(getattr(cls, name))
        assert not [p for p in got.values() if p.kind is p.VAR_KEYWORD], f"{cls.__name__}.{name} takes **kwargs"
        for pname, p in want.items():
            assert pname in got, f"{cls.__name__}.{name} lacks {pname!r}"
            assert got[pname].default == p.default, f"{cls.__name__}.{name}({pname}=...) default differs"
        extra = [q for n, q in got.items() if n not in want and q.default is q.empty]
        assert not extra, f"{cls.__name__}.{name}: extra parameters need defaults: {extra}"
