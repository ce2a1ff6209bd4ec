"""choicebc: robust behaviour cloning from corrupted demonstrations (ChoiceNet's Cholesky Block).

Public API (see README): ``import choicebc as cb``.
"""

from choicebc.experts import load_expert, reference_returns
from choicebc.sim import BatchedEnv, make_batched

__version__ = "0.1.0"

__all__ = ["BatchedEnv", "make_batched", "__version__", "load_expert", "reference_returns"]
