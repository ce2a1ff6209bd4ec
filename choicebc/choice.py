"""One choice of mixture per demonstration: ChoiceNet for demonstrators that drive whole episodes.

The per-step head (eq. (6)) lets every step pick its own mixture. When a bad demonstrator
drives *whole episodes*, that cannot work: outside the first steps no state holds both a clean
and a corrupt action, so the corrupt episodes are self-consistent and the target mixture
learns them too. What identifies them is that both drivers start from the same initial-state
distribution and that **one episode is driven by one demonstrator**. Here the latent choice
``z_u`` of mixture is made once per *unit* -- an episode, or a group of episodes (an operator
id, ``DemoSet.groups``) -- and the unit's likelihood is the product of eq. (6)'s per-step
densities under that one choice::

    p(A_u | S_u) = sum_k w_uk prod_{t in u} N(a_t; mu_k(s_t), var_k(s_t))
    log w_uk     = log_softmax_k( mean over the unit's episodes of log pi_k(s_0) )

The Cholesky tie ``mu_k = rho_k(s) mu_1(s)`` stays, so a unit explained by a ``rho = -1``
mixture teaches ``mu_1`` the negation of its actions: a flipped episode becomes usable data.
The episode-level weights are ``pi`` at the units' first states, and eq. (8)'s KL is applied
there only (:meth:`ChoiceTraining.loss_weights`).

Training is EM with minibatches (:class:`ChoiceTraining`): the E-step computes each unit's
posterior ``q_u`` over the mixtures; the M-step is the per-step loss with ``q_u`` as fixed
responsibilities (``ChoiceNetHead.loss(resp=...)``), whose gradient at ``q`` = the posterior is
that of the units' log-likelihood. Started naively this collapses (every unit to one broad
mixture, or the bad units locked onto the target by their many self-consistent later steps:
docs/design-notes.md). So the evidence grows from the first steps outward:

1. warm-up (``train_bc``, before the training proper): the per-step ChoiceNet on the first
   ``horizon`` steps of every episode only, with its own learning-rate and lambda1 schedules,
   near the states both drivers share, where the majority defines the target. It starts from
   mu_1 fitted to the conditional median of those steps' actions -- the majority driver's
   action -- not the mean between the drivers, from which broad mixtures can take both;
2. an E-step over the first step of every episode alone assigns the units: from the second
   step on a driver is already in states of its own, where the warm-up has fitted its actions
   to the target, and a few such steps outvote the first (docs/design-notes.md);
3. the E-step's horizon grows geometrically to whole episodes (by ``grow`` = 15 % of the
   steps, before the learning rate drops), with an E-step whenever the rows that train have
   been drawn twice (:data:`ESTEP_PASSES`); the rows that train are the warm-up's, or the
   E-step's horizon once it is longer, so every step the E-step counts has been fitted under
   the current choice first.

Three more pieces keep the identification made at the first steps: each mixture's rho in a
unit's later states is held to its value over the unit's first steps
(:meth:`ChoiceTraining.rho_anchor`); a mixture's likelihood reaches mu_1 only when it is
tied to it tightly, ``|rho| >= 0.95`` and as sharp as the target (the target's copies, a
flipped driver: :func:`tight_mask`), while a broad mixture is fitted given mu_1 (the
``tie_weight`` of :meth:`ChoiceTraining.loss_weights`); and a mixture that has become a
copy of the target on a unit's own steps is the target for that unit (:func:`merge_copies`).

``choice="auto"`` runs the warm-up and then takes one choice per unit when, on the warm-up's
rows, either one choice per unit explains the steps better than one per step with the same
densities, or corruption shows at the first step and fades after it (:func:`pick_choice`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choicebc.heads.base import TARGET_RHO_MIN

CHOICES = ("step", "episode", "group", "auto")
"""``step``: eq. (6) per step; ``episode``/``group``: one choice per episode / per group of
episodes; ``auto``: picked per dataset (:func:`decide_choice`)."""
AUTO_MARGIN = 0.2
"""nats per step by which one choice per unit must beat one per step for ``auto`` to take it
(docs/design-notes.md: 0.45 on PointReach's flipped episodes, 0.054 on clean HalfCheetah,
where one choice per episode gains only by paying the target's ``-log pi_1`` once per episode)."""
AUTO_MIN_FLAGGED = 0.05
"""share of the first steps the warm-up must flag for ``auto`` to read corruption into them"""
AUTO_FADE = 8.0
"""how many times the first steps' flagged share must exceed the later ones' (``auto``;
docs/design-notes.md: at most 6.0 measured with corruption by steps, 14 or more where auto took
one choice per episode)"""
ESTEP_MIN_INTERVAL = 100
"""fewest optimizer steps between two E-steps"""
ESTEP_PASSES = 2.0
"""an E-step runs whenever the rows that train have been drawn this many times on average (an
E-step is one forward pass over them: about a sixth of the training's own work at 2)"""
TIE_SPREAD_MAX = 4.0
"""most a mixture's variance may exceed the target's, over a unit's first steps, for its
``|rho| >= 0.95`` to tie the unit to mu_1 (docs/design-notes.md, measured after the warm-up:
up to 1.4 for a flipped driver -- 8.4 for three units of one set --, 2.7 on random episodes,
3 to 34 for the medium operators of Hopper and Walker2d)"""
CHUNK = 65_536


class ChoiceError(ValueError):
    """A ``choice`` that does not fit the head or the demonstrations (the message says why)."""


@dataclass(frozen=True)
class ChoiceSchedule:
    """When the demonstration-level choice decides what.

    Attributes:
        horizon: first steps of every episode the warm-up trains on and the first E-step
            counts (the states both drivers share).
        warmup: steps of the per-step warm-up, as a share of the training steps (it runs
            before them, with its own schedules).
        grow: share of the training steps by which the E-step's horizon covers whole
            episodes.
        anchor: weight of :meth:`ChoiceTraining.rho_anchor`.
    """

    horizon: int = 5
    warmup: float = 0.1
    grow: float = 0.15
    anchor: float = 1.0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ChoiceError(f"choice horizon must be >= 1 step, got {self.horizon}")
        if not 0.0 <= self.warmup <= 1.0 or not 0.0 < self.grow <= 1.0:
            raise ChoiceError(
                f"need choice warmup in [0, 1] ({self.warmup}) and grow in (0, 1] ({self.grow})"
            )
        if self.anchor < 0:
            raise ChoiceError(f"choice anchor must be >= 0, got {self.anchor}")


def validate_choice(choice: str, head: str, discrete: bool) -> None:
    """Raise :class:`ChoiceError` unless ``choice`` can train ``head``."""
    if choice not in CHOICES:
        raise ChoiceError(f"choice must be one of {CHOICES}, got {choice!r}")
    if choice in ("episode", "group") and (head != "choicenet" or discrete):
        raise ChoiceError(
            f"choice={choice!r} is a choice of ChoiceNet mixture: it needs head='choicenet' on "
            "continuous actions (use choice='step' with other heads)"
        )


def unit_ids(
    episode_ids: np.ndarray, groups: np.ndarray | None, choice: str
) -> tuple[np.ndarray, int]:
    """``(M,) int64`` unit of every transition and the number of units.

    Args:
        episode_ids: ``(M,) int64`` episode (0 .. E-1) of every transition.
        groups: ``(E,)`` group (operator id) of every episode, or None.
        choice: ``episode`` (a unit is an episode) or ``group`` (units are the groups,
            numbered in order of first appearance).

    Raises:
        ChoiceError: ``group`` without ``groups``, or ``groups`` of the wrong length.
    """
    episode_ids = np.asarray(episode_ids, dtype=np.int64)
    n_episodes = int(episode_ids.max()) + 1 if len(episode_ids) else 0
    if choice != "group":
        return episode_ids, n_episodes
    if groups is None:
        raise ChoiceError(
            "choice='group' needs a per-episode group (operator id): set DemoSet.groups, "
            "or use choice='episode'"
        )
    groups = np.asarray(groups)
    if groups.shape != (n_episodes,):
        raise ChoiceError(
            f"groups has shape {groups.shape}, expected ({n_episodes},): one per episode"
        )
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # number groups by first appearance
    return rank[inverse.reshape(-1)][episode_ids].astype(np.int64), len(first)


def unit_log_scores(
    log_pi: Tensor, log_density: Tensor, units: Tensor, first: Tensor, n_units: int
) -> Tensor:
    """``(U, K)`` joint log-score ``log w_uk + sum_t log N_tk`` of each unit under each mixture.

    Args:
        log_pi: ``(N, K)`` per-step log mixture weights.
        log_density: ``(N, K)`` per-step ``log N(a_t; mu_k(s_t), var_k(s_t))``.
        units: ``(N,) int64`` unit of each step.
        first: ``(N,) bool`` the step is an episode's first (its ``pi`` is the episode's weight).
        n_units: U.
    """
    k = log_pi.shape[1]
    dens = log_density.new_zeros(n_units, k).index_add_(0, units, log_density)
    prior = log_pi.new_zeros(n_units, k).index_add_(0, units[first], log_pi[first])
    count = log_pi.new_zeros(n_units).index_add_(0, units[first], log_pi.new_ones(int(first.sum())))
    has_first = count > 0
    prior[has_first] = torch.log_softmax(prior[has_first] / count[has_first, None], dim=-1)
    prior[~has_first] = -math.log(k)  # a unit whose first step lies outside the rows: uniform
    return dens + prior


def demo_log_likelihood(scores: Tensor) -> Tensor:
    """``(U,)`` each unit's log-likelihood ``log sum_k w_uk prod_t N_tk`` from its scores."""
    return torch.logsumexp(scores, dim=-1)


@torch.no_grad()
def score_rows(policy: Any, obs: Tensor, actions: Tensor, rows: Tensor | None = None):
    """Per-step ``log_pi, log_density, rho, spread`` ``(N, K)`` of the policy's eval-mode
    mixture (``mu_k = rho_k mu_1``, no sampling noise), in chunks; ``spread`` is each
    mixture's variance over the target's, averaged over the action dimensions; ``rows``
    selects transitions."""
    was_training = policy.training
    policy.eval()
    n = len(obs) if rows is None else len(rows)
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    try:
        for start in range(0, n, CHUNK):
            sel = slice(start, start + CHUNK)
            idx = None if rows is None else rows[sel]
            o = obs[sel] if idx is None else obs.index_select(0, idx)
            a = actions[sel] if idx is None else actions.index_select(0, idx)
            mix = policy.mixture(o)
            rho = mix.rho if mix.rho is not None else torch.ones_like(mix.log_pi)
            spread = (mix.var / mix.var[:, :1]).mean(-1)
            parts.append((mix.log_pi, mix.component_log_prob(a), rho, spread))
    finally:
        policy.train(was_training)
    if not parts:
        raise ChoiceError("no transitions to score")
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def unit_mean(values: Tensor, units: Tensor, n_units: int) -> Tensor:
    """``(U, K)`` mean of per-step ``values (N, K)`` over each unit's steps (0 without any)."""
    total = values.new_zeros(n_units, values.shape[1]).index_add_(0, units, values)
    count = values.new_zeros(n_units).index_add_(0, units, values.new_ones(len(units)))
    return total / count.clamp_min(1)[:, None]


def family_mask(rho_bar: Tensor, rho_min: float = TARGET_RHO_MIN) -> Tensor:
    """``(U, K)`` float: the mixtures whose mean correlation is >= ``rho_min`` (copies of the
    target, as :meth:`Mixture.target_posterior` counts them); column 0 always."""
    mask = (rho_bar >= rho_min).to(rho_bar.dtype)
    mask[:, 0] = 1.0
    return mask


def tight_mask(spread_bar: Tensor, max_spread: float = TIE_SPREAD_MAX) -> Tensor:
    """``(U, K)`` float: the mixtures whose variance over a unit's first steps is at most
    ``max_spread`` times the target's (``spread_bar``, :func:`score_rows`); column 0 always.

    Only such a mixture is a function of mu_1: eq. (6)'s ``(1 - rho^2) Sigma_0`` can stay
    broad at ``|rho| ~ 1`` when ``Sigma_0`` grows, and eq. (8)'s KL pulls the rho of every
    mixture the target does not use towards -1. Tied through that rho, a worse operator's
    episodes taught mu_1 the negation of its actions (Hopper, 20 % medium episodes:
    43.7 against the oracle's 99.5; docs/design-notes.md).
    """
    mask = (spread_bar <= max_spread).to(spread_bar.dtype)
    mask[:, 0] = 1.0
    return mask


def merge_copies(q: Tensor, rho_unit: Tensor) -> Tensor:
    """``q (U, K)`` with the mass of every mixture that is a copy of the target on a unit's
    own steps -- mean correlation ``rho_unit (U, K)`` there >= 0.95 -- moved to mixture 1.

    Without it the whole-episode E-step can hand a clean unit to a mixture that became the
    target's copy in the unit's later states while its correlation at the first steps (the
    one :attr:`ChoiceTraining.rho_bar` keeps) is lower: that mixture is neither the target's
    family nor tied to mu_1, so the clean units stop teaching mu_1 and pi_1 goes to 0
    (HalfCheetah, 40 % random episodes: 4.6 against the oracle's 99.2; docs/design-notes.md).
    """
    copies = family_mask(rho_unit)
    target = (q * copies).sum(-1, keepdim=True)
    return torch.cat([target, q[:, 1:] * (1.0 - copies[:, 1:])], dim=-1)


class ChoiceTraining:
    """The demonstration-level choice inside :func:`choicebc.train_bc`: rows by time, the
    horizon, the E-steps and the per-unit responsibilities ``q (U, K)``.

    Args:
        units: ``(M,) int64`` unit of each training transition.
        timesteps: ``(M,) int64`` step index of each transition within its episode.
        n_units: U.
        k: mixtures of the head.
        steps: optimizer steps of the whole training.
        batch_size: transitions per optimizer step.
        schedule: horizon, warm-up and growth (:class:`ChoiceSchedule`).
    """

    def __init__(
        self,
        units: np.ndarray,
        timesteps: np.ndarray,
        n_units: int,
        k: int,
        steps: int,
        batch_size: int,
        schedule: ChoiceSchedule,
    ) -> None:
        timesteps = np.asarray(timesteps, dtype=np.int64)
        order = np.argsort(timesteps, kind="stable")  # rows with t < H are a prefix
        self.order = torch.from_numpy(order)
        self.sorted_t = timesteps[order]
        self.units = torch.from_numpy(np.asarray(units, dtype=np.int64))
        self.first = torch.from_numpy(timesteps == 0)
        self.n_units, self.k, self.steps, self.batch_size = n_units, k, steps, batch_size
        self.schedule = schedule
        self.max_len = int(timesteps.max()) + 1
        self.grow_end = max(1, int(schedule.grow * steps))
        self.q: Tensor | None = None  # (U, K) posterior, from the first E-step on
        self.rho_bar: Tensor | None = None  # (U, K) rho over the unit's first steps, once
        self.target: Tensor | None = None  # (U, K) 1 on the target's family, from rho_bar
        self.family: Tensor | None = None  # (U,) posterior share of the target's family
        self.tied: Tensor | None = None  # (U, K) 1 where mixture k's likelihood reaches mu_1
        self.last_estep = -1

    def estep_horizon(self, step: int) -> int:
        """Steps of every episode that count in the E-step at ``step``: the first step alone
        at first (the states both drivers share), then geometrically more, to whole episodes
        at ``grow`` of the training."""
        if step >= self.grow_end:
            return self.max_len
        return int(min(self.max_len, math.floor(self.max_len ** (step / self.grow_end))))

    def horizon(self, step: int) -> int:
        """Steps of every episode that train at ``step``: the warm-up's first ``horizon``
        steps, or the E-step's horizon once it is longer."""
        return max(min(self.schedule.horizon, self.max_len), self.estep_horizon(step))

    def rows_before(self, horizon: int) -> int:
        """How many training rows lie among the first ``horizon`` steps of their episode."""
        return int(np.searchsorted(self.sorted_t, horizon, side="left"))

    def rows_in_horizon(self, step: int) -> int:
        return self.rows_before(self.horizon(step))

    def before_step(self, step: int, policy: Any, obs: Tensor, actions: Tensor) -> None:
        """Run an E-step when one is due: at the first step, then whenever the rows
        that train have been drawn :data:`ESTEP_PASSES` times since the last one."""
        passes = ESTEP_PASSES * self.rows_in_horizon(step) / self.batch_size
        interval = max(ESTEP_MIN_INTERVAL, math.ceil(passes))
        if self.q is None or step - self.last_estep >= interval:
            n = self.rows_before(self.estep_horizon(step))
            self.estep(policy, obs, actions, self.order[:n])
            self.last_estep = step

    def estep(self, policy: Any, obs: Tensor, actions: Tensor, rows: Tensor) -> None:
        """Each unit's posterior ``q (U, K)`` over the mixtures from the given rows, with the
        mass of the target's copies on the unit's rows moved to mixture 1
        (:func:`merge_copies`); at the first E-step, each mixture's mean correlation
        ``rho_bar (U, K)`` over the unit's first ``horizon`` steps as the warm-up left it --
        where the drivers' states meet and the correlation is identified -- kept from then
        on, with what it fixes: the target's family (``rho_bar >= 0.95`` and as sharp as the
        target there, :func:`tight_mask`) and the tie weights; and the share of ``q`` on that
        family."""
        log_pi, log_density, rho, _ = score_rows(policy, obs, actions, rows)
        units, first = self.units[rows], self.first[rows]
        scores = unit_log_scores(log_pi, log_density, units, first, self.n_units)
        self.q = merge_copies(torch.softmax(scores, dim=-1), unit_mean(rho, units, self.n_units))
        if self.rho_bar is None:  # identified once, by the warm-up, where the drivers meet
            early = self.order[: self.rows_before(self.schedule.horizon)]
            _, _, rho, spread = score_rows(policy, obs, actions, early)
            self.rho_bar = unit_mean(rho, self.units[early], self.n_units)
            tight = tight_mask(unit_mean(spread, self.units[early], self.n_units))
            self.target = family_mask(self.rho_bar) * tight
            # a mixture teaches mu_1 only where it is tied to it tightly: the target's copies
            # (rho ~ 1) and a flipped demonstrator (rho ~ -1), as sharp as mu_1; a broad one
            # is explained given mu_1
            self.tied = (self.rho_bar.abs() >= TARGET_RHO_MIN).to(self.q.dtype) * tight
            self.tied[:, 0] = 1.0
        self.family = (self.q * self.target).sum(-1)  # (U,)

    def sample(self, step: int, generator: torch.Generator) -> Tensor:
        """``(B,)`` training rows drawn uniformly from those inside the horizon."""
        n = self.rows_in_horizon(step)
        pick = torch.randint(n, (self.batch_size,), generator=generator)
        return self.order.index_select(0, pick)

    def loss_weights(self, rows: Tensor) -> dict[str, Tensor | None]:
        """Keyword arguments of ``ChoiceNetHead.training_loss`` for a batch of ``rows``:
        the units' responsibilities; the L2 of eq. (7) weighted by the share of the unit's
        posterior on the target's family (mixtures whose correlation over the unit's first
        steps is >= 0.95, as sharp as the target there); eq. (8)'s KL on the episodes' first
        steps (the episode-level weights); and the tie weights: a mixture's likelihood reaches
        mu_1 through ``mu_k = rho_k mu_1`` only if ``|rho_bar_uk| >= 0.95`` and it is as sharp
        as the target on the unit's first steps (:func:`tight_mask`) -- the target's copies and a
        flipped demonstrator, whose actions are mu_1's negation -- while a broad mixture
        (``rho`` in between: a random or weaker operator) is fitted given mu_1 and never
        moves it (docs/design-notes.md)."""
        units = self.units.index_select(0, rows)
        return {
            "resp": self.q.index_select(0, units),
            "l2_weight": self.family.index_select(0, units),
            "kl_weight": self.first.index_select(0, rows).float(),
            "tie_weight": self.tied.index_select(0, units),
        }

    def rho_anchor(self, head: Any, h: Tensor, rows: Tensor) -> Tensor:
        """``anchor * mean_t sum_k q_uk (rho_k(s_t) - rho_bar_uk)^2``: a demonstrator's
        correlation with the target is its own, so each mixture's rho in the unit's later
        states is held to the value the warm-up identified over the unit's first steps.
        Without it a mixture that explains a flipped driver (rho = -1 where both drivers'
        states meet) may take rho = +1 in states only that driver visits, which fits its
        actions as well and teaches mu_1 the flipped actions there (docs/design-notes.md)."""
        if self.schedule.anchor == 0:
            return h.new_zeros(())
        units = self.units.index_select(0, rows)
        rho = head.correlations(h)
        gap = (rho - self.rho_bar.index_select(0, units).to(rho.dtype)) ** 2
        return self.schedule.anchor * (self.q.index_select(0, units) * gap).sum(-1).mean()

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "rho_bar": self.rho_bar,
            "target": self.target,
            "family": self.family,
            "tied": self.tied,
            "last_estep": self.last_estep,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q, self.rho_bar, self.family = state["q"], state["rho_bar"], state["family"]
        self.tied, self.target = state["tied"], state.get("target")
        if self.target is None and self.rho_bar is not None:  # a checkpoint from before it
            self.target = family_mask(self.rho_bar)
        self.last_estep = int(state["last_estep"])


@torch.no_grad()
def choice_log_likelihoods(
    policy: Any, obs: Tensor, actions: Tensor, timesteps: np.ndarray, unit_sets: dict[str, tuple]
) -> dict[str, float]:
    """Log-likelihood per step of ``(obs, actions)`` under one choice per step and under one
    choice per unit for each entry of ``unit_sets`` (``name -> (units (M,), n_units)``), with
    the same per-step densities."""
    first = torch.from_numpy(np.asarray(timesteps) == 0)
    log_pi, log_density, _, _ = score_rows(policy, obs, actions)
    n = len(obs)
    out = {"step": float(torch.logsumexp(log_pi + log_density, dim=-1).sum()) / n}
    for name, (units, n_units) in unit_sets.items():
        scores = unit_log_scores(log_pi, log_density, torch.from_numpy(units), first, n_units)
        out[name] = float(demo_log_likelihood(scores).sum()) / n
    return out


def flagged_shares(quality: np.ndarray, timesteps: np.ndarray) -> dict[str, float]:
    """Share of the steps a per-step model gives to the corrupt side (``1 - quality``, the
    mean), at the first step and at the later ones of the rows it saw."""
    quality, timesteps = np.asarray(quality, np.float64), np.asarray(timesteps)
    first = timesteps == 0
    later = float(1.0 - quality[~first].mean()) if (~first).any() else 0.0
    return {"first": float(1.0 - quality[first].mean()), "later": later}


def pick_choice(
    log_liks: dict[str, float],
    flagged: dict[str, float] | None = None,
    margin: float = AUTO_MARGIN,
) -> str:
    """The choice ``auto`` takes from the warm-up's measurements.

    One choice per episode when either holds:

    * its log-likelihood per step beats one choice per step by ``margin`` with the same
      densities (a bad driver whose steps share states with the good ones throughout);
    * corruption is visible at the first step, where every driver's states meet, and fades
      after it: the per-step model flags a share >= :data:`AUTO_MIN_FLAGGED` of the first
      steps and at least :data:`AUTO_FADE` times the share of the later ones. A driver whose
      later steps are in states of its own is self-consistent there, and a per-step model takes
      its actions for the target's; corruption by steps is flagged at every step alike.

    Then one choice per group when the groups explain the steps as well as the episodes
    (within ``margin``).
    """
    by_likelihood = "episode" in log_liks and log_liks["episode"] >= log_liks["step"] + margin
    fades = (
        flagged is not None
        and flagged["first"] >= AUTO_MIN_FLAGGED
        and flagged["first"] >= AUTO_FADE * flagged["later"]
        and "episode" in log_liks
    )
    if not (by_likelihood or fades):
        return "step"
    if "group" in log_liks and log_liks["group"] >= log_liks["episode"] - margin:
        return "group"
    return "episode"
