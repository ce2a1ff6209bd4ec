"""choicebc: robust behaviour cloning from corrupted demonstrations (ChoiceNet's Cholesky Block).

Public API (see README): ``import choicebc as cb``. The names below are imported on first use
(PEP 562), so ``import choicebc`` — and every ``choicebc ... --help`` — loads neither torch nor
MuJoCo until a name that needs them is touched.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from choicebc.version import __version__

_EXPORTS: dict[str, str] = {
    "ChoiceNetClassifier": "choicebc.classifier",
    "ChoiceNetRegressor": "choicebc.regressor",
    "HeadRegressor": "choicebc.regressor",
    "BCPolicy": "choicebc.policy",
    "TrainConfig": "choicebc.train",
    "train_bc": "choicebc.train",
    "BCNDPolicy": "choicebc.bcnd",
    "train_bcnd": "choicebc.bcnd",
    "BatchedEnv": "choicebc.sim",
    "make_batched": "choicebc.sim",
    "EvalResult": "choicebc.evaluation",
    "evaluate": "choicebc.evaluation",
    "load_expert": "choicebc.experts",
    "reference_returns": "choicebc.experts",
    "collect": "choicebc.collect",
    "DemoSet": "choicebc.demoset",
    "make_adversary": "choicebc.adversaries",
}
"""Public name -> the module that defines it."""

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # static analysers and IDEs see the real imports
    from choicebc.adversaries import make_adversary as make_adversary
    from choicebc.bcnd import BCNDPolicy as BCNDPolicy
    from choicebc.bcnd import train_bcnd as train_bcnd
    from choicebc.classifier import ChoiceNetClassifier as ChoiceNetClassifier
    from choicebc.collect import collect as collect
    from choicebc.demoset import DemoSet as DemoSet
    from choicebc.evaluation import EvalResult as EvalResult
    from choicebc.evaluation import evaluate as evaluate
    from choicebc.experts import load_expert as load_expert
    from choicebc.experts import reference_returns as reference_returns
    from choicebc.policy import BCPolicy as BCPolicy
    from choicebc.regressor import ChoiceNetRegressor as ChoiceNetRegressor
    from choicebc.regressor import HeadRegressor as HeadRegressor
    from choicebc.sim import BatchedEnv as BatchedEnv
    from choicebc.sim import make_batched as make_batched
    from choicebc.train import TrainConfig as TrainConfig
    from choicebc.train import train_bc as train_bc


class _Package(types.ModuleType):
    """This package's module type: ``choicebc.collect`` is the function, as the public API
    says, although a submodule of that name exists. Importing the submodule (which sets the
    package's attribute to it) must not replace the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'choicebc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
