"""Output heads behind one interface: ``forward(h) -> Mixture``, ``loss``, ``mode``.

Registered names: ``choicenet`` (default), ``mdn``, ``mse``, ``l1``, ``robust`` (Tukey); for
classification (``choicebc.heads.classification``): ``choicenet_cls``, ``ce``, ``fcorrection``,
``mdn_cls``.
"""

from choicebc.heads.base import (
    HEADS,
    VAR_FLOOR,
    Head,
    Mixture,
    head_from_config,
    make_head,
    register_head,
)
from choicebc.heads.choicenet import ChoiceNetHead
from choicebc.heads.gmm import GMMHead
from choicebc.heads.mdn import MDNHead
from choicebc.heads.pointwise import L1Head, MSEHead, TukeyHead

__all__ = [
    "HEADS",
    "VAR_FLOOR",
    "ChoiceNetHead",
    "GMMHead",
    "Head",
    "L1Head",
    "MDNHead",
    "MSEHead",
    "Mixture",
    "TukeyHead",
    "head_from_config",
    "make_head",
    "register_head",
]
