"""The methods of the robustness report, and how each is trained and ranks demonstrations.

:data:`METHODS` is the registry (table order); :func:`train_method` trains one of them on a
``DemoSet``. ``choicebc quickstart`` and the report's cells both train through it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


class ReportError(ValueError):
    """A report setting or run folder a user must fix (the message says how)."""


@dataclass
class BudgetFlags:
    """The size of a method comparison: the flags ``choicebc quickstart`` and
    ``choicebc report`` share."""

    episodes: int = 100
    """demonstration episodes per demonstration set"""
    steps: int = 20_000
    """optimizer steps per BC policy"""
    eval_episodes: int = 100
    """evaluation episodes per policy"""
    num_envs: int = 100
    """parallel simulations for collection and evaluation"""


@dataclass(frozen=True)
class Method:
    """One method of the report.

    Attributes:
        name: key in cell files and on the command line.
        label: row label in the tables.
        head: ``choicebc.heads`` head of the BC policy (``None`` for BCND).
        clean_only: train on the ground-truth clean steps only (the oracle).
        scores: the policy's ``data_quality`` ranks corrupt steps (ROC AUC is reported).
        reference: where the method comes from (printed under the tables).
        choice: ChoiceNet's choice of mixture (``step``, ``episode``, ``auto``; see
            :mod:`choicebc.choice`), ``None`` for other heads.
        uses_rewards: the method reads the demonstrations' rewards, which real teleoperation
            data usually lack (marked in the tables, never bold).
        top_by_return: train on the top ``1 - ratio`` share of the episodes by return (%BC).
    """

    name: str
    label: str
    head: str | None
    clean_only: bool = False
    scores: bool = False
    reference: str = ""
    choice: str | None = None
    uses_rewards: bool = False
    top_by_return: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "choicenet",
            "ChoiceNet-BC",
            "choicenet",
            scores=True,
            reference="Choi et al., ChoiceNet (2018): Cholesky-block mixture of correlated means; "
            "one choice of mixture per step (eq. (6))",
            choice="step",
        ),
        Method(
            "choicenet_episode",
            "ChoiceNet-BC (episode)",
            "choicenet",
            scores=True,
            reference="ChoiceNet with one choice of mixture per demonstration (choicebc.choice)",
            choice="episode",
        ),
        Method(
            "choicenet_auto",
            "ChoiceNet-BC (auto)",
            "choicenet",
            scores=True,
            reference="ChoiceNet with the choice picked per dataset (train_bc's default)",
            choice="auto",
        ),
        Method("mse", "MSE-BC", "mse", reference="plain behaviour cloning, squared error"),
        Method(
            "mdn",
            "MDN-BC",
            "mdn",
            scores=True,
            reference="Bishop (1994) mixture density network, K=5 diagonal Gaussians",
        ),
        Method(
            "gmm",
            "GMM-BC (robomimic)",
            "gmm",
            scores=True,
            reference="Mandlekar et al., robomimic (CoRL 2021) BC-GMM: 5 modes, softplus std",
        ),
        Method("l1", "L1-BC", "l1", reference="absolute-error BC (median regression)"),
        Method(
            "robust",
            "Tukey-BC",
            "robust",
            reference="Tukey biweight robust loss (Beaton & Tukey 1974)",
        ),
        Method(
            "bcnd",
            "BCND",
            None,
            scores=True,
            reference="Sasaki & Yamashina, ICLR 2021: ensemble reweighted by its own likelihood",
        ),
        Method(
            "pbc",
            "%BC (uses rewards)",
            "mse",
            scores=True,
            reference="MSE-BC on the top (1 - ratio) episodes by return (Chen et al., Decision "
            "Transformer, 2021): needs rewards",
            uses_rewards=True,
            top_by_return=True,
        ),
        Method(
            "oracle",
            "Oracle MSE-BC (clean steps only)",
            "mse",
            clean_only=True,
            reference="MSE-BC on the ground-truth clean steps only: the ceiling",
        ),
    )
}


def available_methods() -> list[str]:
    """Methods whose implementation is importable here, in table order: a method's head must
    be registered in :data:`choicebc.heads.HEADS` (BCND has no head)."""
    from choicebc.heads import HEADS

    return [n for n, m in METHODS.items() if m.head is None or m.head in HEADS]


def train_method(
    method: str,
    demos: Any,
    steps: int,
    seed: int,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    bcnd_ensemble: int = 5,
    bcnd_rounds: int = 3,
    ratio: float = 0.0,
) -> Any:
    """Train one report method on ``demos``; returns a policy with ``act`` and ``data_quality``.

    Args:
        method: a key of :data:`METHODS`.
        demos: a ``DemoSet`` (ground-truth ``is_corrupt`` needed for the oracle).
        steps: optimizer steps (BCND: per member per round, ``ensemble * rounds`` runs).
        seed: training seed.
        out: ``train_bc`` run folder (logs, checkpoints, ``policy/``); ``None``: in memory.
        progress: show the training progress bar.
        bcnd_ensemble, bcnd_rounds: BCND's ensemble size and number of rounds.
        ratio: the corruption ratio the set was collected with (%BC keeps the top
            ``1 - ratio`` of the episodes by return).

    Raises:
        ReportError: unknown method, or one whose head is not registered here.
    """
    import choicebc as cb

    if method not in METHODS:
        raise ReportError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    spec = METHODS[method]
    if spec.head is None:
        return cb.train_bcnd(
            demos,
            ensemble=bcnd_ensemble,
            rounds=bcnd_rounds,
            steps=steps,
            seed=seed,
            progress=progress,
            out=out,
        )
    from choicebc.heads import HEADS

    if spec.head not in HEADS:
        raise ReportError(f"method {method!r} needs head {spec.head!r}, not registered here")
    cfg = cb.TrainConfig(head=spec.head, steps=steps, seed=seed, clean_only=spec.clean_only)
    if spec.choice is not None:
        cfg = replace(cfg, choice=spec.choice)
    if spec.top_by_return:
        demos = top_episodes_by_return(demos, 1.0 - ratio)
    return cb.train_bc(demos, config=cfg, out=out, progress=progress)


def top_episodes_by_return(demos: Any, share: float) -> Any:
    """The ``share`` of ``demos``' episodes with the highest returns (at least one): %BC."""
    n = max(1, int(round(share * demos.num_episodes)))
    order = np.argsort(-np.asarray(demos.episode_returns), kind="stable")
    keep = np.zeros(demos.num_episodes, dtype=bool)
    keep[order[:n]] = True
    return demos.filter_episodes(keep)


def demo_scores(method: str, policy: Any, demos: Any) -> np.ndarray | None:
    """``(E,)`` how each method ranks whole demonstrations (high = the target's), or None:
    ``demo_quality`` for a BC policy with a noise model, the episode mean of ``data_quality``
    for BCND, the return for %BC."""
    spec = METHODS[method]
    if spec.top_by_return:
        return np.asarray(demos.episode_returns, dtype=np.float64)
    if not spec.scores:
        return None
    if hasattr(policy, "demo_quality"):
        return policy.demo_quality(demos)
    from choicebc.demoset import episode_means

    return episode_means(policy.data_quality(demos), demos.episode_lengths)
