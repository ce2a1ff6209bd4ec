"""choicebc: robust behaviour cloning from corrupted demonstrations (ChoiceNet's Cholesky Block).

Public API (see README): ``import choicebc as cb``.
"""

from choicebc.adversaries import make_adversary
from choicebc.bcnd import BCNDPolicy, train_bcnd
from choicebc.classifier import ChoiceNetClassifier
from choicebc.collect import collect
from choicebc.demoset import DemoSet
from choicebc.evaluation import EvalResult, evaluate
from choicebc.experts import load_expert, reference_returns
from choicebc.policy import BCPolicy
from choicebc.regressor import ChoiceNetRegressor, HeadRegressor
from choicebc.sim import BatchedEnv, make_batched
from choicebc.train import TrainConfig, train_bc

__version__ = "0.1.0"

__all__ = [
    "ChoiceNetClassifier",
    "ChoiceNetRegressor",
    "HeadRegressor",
    "BCPolicy",
    "TrainConfig",
    "train_bc",
    "BCNDPolicy",
    "train_bcnd",
    "BatchedEnv",
    "make_batched",
    "EvalResult",
    "evaluate",
    "__version__",
    "load_expert",
    "reference_returns",
    "collect",
    "DemoSet",
    "make_adversary",
]
