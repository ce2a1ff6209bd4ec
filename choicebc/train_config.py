"""The settings of :func:`choicebc.train.train_bc` (also the flags of ``choicebc train``).

Torch-free, so ``choicebc train --help`` answers without loading torch; :mod:`choicebc.train`
re-exports :class:`TrainConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Behaviour-cloning settings (the ``choicebc train`` flags are generated from these)."""

    head: str = "choicenet"
    """output head: choicenet, mdn, mse, l1 or robust (discrete actions: choicenet, ce, mdn,
    fcorrection)"""
    steps: int = 20_000
    """optimizer steps"""
    batch_size: int = 256
    """transitions per step"""
    lr: float = 1e-3
    """Adam learning rate (x0.1 at 50 % and x0.01 at 75 % of the steps)"""
    weight_decay: float = 1e-5
    """Adam L2 weight decay"""
    hidden: tuple[int, ...] = field(default=(256, 256))
    """backbone hidden sizes (ReLU)"""
    seed: int = 0
    """seed of the split, the initialisation, the batches and the head's sampling"""
    val_fraction: float = 0.05
    """share of episodes held out for validation"""
    log_every: int = 500
    """steps between log rows (and validation)"""
    checkpoint_every: int = 2_000
    """steps between checkpoints (0: only at the end)"""
    clean_only: bool = False
    """train only on steps whose ground-truth label says the expert acted (the oracle)"""
    torch_threads: int = 0
    """torch intra-op threads (0: torch's default)"""
    choice: str = "auto"
    """ChoiceNet's choice of mixture: step (eq. (6), per step), episode or group (one choice
    per demonstration / per operator group), auto (picked per dataset); other heads: step"""
    choice_horizon: int = 5
    """first steps of every episode that decide a demonstration's choice at first"""
    choice_warmup: float = 0.1
    """length of the per-step warm-up on the first steps, which runs before the training
    (episode, group and auto; at least 500 steps), as a share of --steps"""
    choice_grow: float = 0.15
    """share of the steps by which the choice's horizon covers whole episodes (early, so that
    whole episodes train before the learning rate drops at half the steps)"""
    choice_anchor: float = 1.0
    """weight that holds each mixture's correlation in a demonstration's newer states to its
    value over the steps already counted"""
