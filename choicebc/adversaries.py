"""Adversarial demonstrators: what gets mixed into the expert's demonstrations.

Every adversary is a batched callable ``obs (N, obs_dim) float32 -> actions (N, act_dim)
float32``, like the expert, and each stands for a failure seen in real demonstration data:

* ``flipped`` — ``-expert(obs)``: the paper's negatively correlated demonstrator (rho = -1). In
  practice: a teleoperation axis wired or calibrated with the wrong sign, a mirrored camera or
  joystick frame, a left/right joint-order swap between the logging and the robot.
* ``random`` — uniform in the action box, independent of the state (rho = 0): an operator who
  lets go of the controls, a dropped teleop link whose receiver logs stale or garbage commands,
  a logging bug pairing actions with the wrong timestamps.
* ``noisy`` — ``clip(expert(obs) + N(0, sigma^2))``: the right intent, executed imprecisely; a
  shaky hand, a coarse input device, a low-gain teleop interface.
* ``saboteur`` — an SB3 policy trained to *minimise* the task reward: competent, consistent and
  state-dependent, but aimed elsewhere. It stands for a demonstrator optimising a different
  objective (a misunderstood task, a conflicting incentive) or deliberate data poisoning; the
  hardest case, since its actions are as smooth and self-consistent as the expert's.
* ``medium`` — an intermediate checkpoint of the expert's own SAC training at 30-60 % of its
  return (D4RL's "medium"): a weaker but honest operator, the commonest case in multi-operator
  datasets (robomimic's "worse / okay / better" operators). Shipped per locomotion task in
  ``demos/mediums/<env_id>``.

On a task with a discrete action (``Discrete(n)``, e.g. ``choicebc/PointReachDiscrete-v0``) the
same kinds act on integer ids, ``obs (N, obs_dim) -> (N,) int64``:

* ``flipped`` — the *opposite* action of the expert's (the task's ``opposite_actions``: the id
  whose control is minus the expert's control, e.g. heading east <-> west). It is the discrete
  analogue of ``-a``: the same sign error in the operator's frame, now on a set of choices.
* ``random`` — uniform over the ``n`` ids.
* ``noisy`` — with probability ``p`` (default 0.3) a uniform random id, else the expert's: the
  discrete analogue of a shaky hand (a mis-pressed key, a coarse menu choice).
* ``saboteur``, ``medium`` — not available: the shipped ones are continuous SB3 actors; pass
  your own callable ``obs -> ids`` as the adversary instead.

Adversaries derived from the expert (``flipped``, ``noisy``) can reuse the expert's actions that
the collector has already computed (:meth:`Adversary.from_expert_actions`), so mixing costs one
policy forward pass per step. Stochastic adversaries own a seeded generator;
:func:`choicebc.collect` reseeds them from its own seed so the same seed gives the same file.
"""

from __future__ import annotations

import difflib
import inspect
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.cards import medium_dir, saboteur_dir
from choicebc.envs import get_task

KINDS = ("flipped", "random", "noisy", "saboteur", "medium")


class UnknownAdversaryError(ValueError):
    """An adversary kind that :func:`make_adversary` does not know."""


class SaboteurNotFoundError(FileNotFoundError):
    """No saboteur (or medium) policy is available for the requested env."""


class Adversary(ABC):
    """Base of the built-in adversaries: a batched callable with a description and a seed.

    Attributes:
        kind: one of :data:`KINDS`.
        expert: the expert this adversary is derived from (``None`` if independent of it).
    """

    kind: str = ""
    expert: Any = None

    action_dtype: type = np.float32
    """dtype of the actions: float32, or int64 for the discrete adversaries."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``obs (N, obs_dim) float32 -> actions (N, act_dim) float32`` (discrete: ``(N,)``
        int64 ids)."""
        obs = np.asarray(obs, dtype=np.float32)
        expert_actions = None
        if self.expert is not None:
            expert_actions = np.asarray(self.expert(obs))
            if self.action_dtype is np.float32:  # discrete ids are validated, never cast
                expert_actions = expert_actions.astype(np.float32)
        return self.from_expert_actions(obs, expert_actions)

    @abstractmethod
    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        """Actions for ``obs (N, obs_dim)`` given the expert's ``(N, act_dim)`` actions for them.

        The collector calls this with the expert actions it already computed; adversaries that
        do not depend on the expert ignore them (``None`` is accepted then).
        """

    def reseed(self, seed: int | None) -> None:  # noqa: B027 (deterministic ones keep it empty)
        """Reset the adversary's random generator (deterministic adversaries: nothing to do)."""

    @property
    def description(self) -> str:
        """One line recorded in DemoSet files."""
        return repr(self)


class RandomizedAdversary(Adversary):
    """An adversary that draws from its own generator ``self._rng``, seeded by :meth:`reseed`."""

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)


class FlippedAdversary(Adversary):
    """``-expert(obs)``: the negatively correlated demonstrator (rho = -1).

    Stands for a sign error between the operator's intent and the logged command (an inverted
    teleop axis, a mirrored frame). With a box symmetric about 0, as in the MuJoCo tasks, the
    flipped action stays in the box; otherwise the simulator clips it.
    """

    kind = "flipped"

    def __init__(self, expert: Any) -> None:
        self.expert = expert

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        if expert_actions is None:
            expert_actions = np.asarray(self.expert(obs), np.float32)
        return np.negative(expert_actions, dtype=np.float32)

    def __repr__(self) -> str:
        return f"FlippedAdversary(expert={describe_policy(self.expert)})"


class RandomAdversary(RandomizedAdversary):
    """Uniform actions in the box, ignoring the state (rho = 0).

    Stands for an operator who is not driving: dropped controls, a dead teleop link logging
    garbage, or actions paired with the wrong observations.

    Args:
        low, high: ``(act_dim,)`` action box.
        seed: seed of the generator (``reseed`` changes it).
    """

    kind = "random"

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int | None = 0) -> None:
        self.low = np.asarray(low, dtype=np.float32).reshape(-1)
        self.high = np.asarray(high, dtype=np.float32).reshape(-1)
        if self.low.shape != self.high.shape or not (self.low <= self.high).all():
            raise ValueError(f"need low <= high of one shape, got {self.low} and {self.high}")
        self.reseed(seed)

    @property
    def act_dim(self) -> int:
        return int(self.low.shape[0])

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        n = np.asarray(obs).shape[0]
        return self._rng.uniform(self.low, self.high, size=(n, self.low.shape[0])).astype(
            np.float32
        )

    def __repr__(self) -> str:
        return f"RandomAdversary(act_dim={self.low.shape[0]})"


class NoisyAdversary(RandomizedAdversary):
    """``clip(expert(obs) + N(0, sigma^2 I), low, high)``: the right intent, imprecisely.

    Stands for a shaky or coarse operator: correlated with the expert, with a spread that
    grows with ``sigma`` (in action units; the MuJoCo boxes are ``[-1, 1]``).

    Args:
        expert: the expert callable.
        sigma: noise standard deviation, > 0.
        low, high: ``(act_dim,)`` action box to clip to.
        seed: seed of the noise generator (``reseed`` changes it).
    """

    kind = "noisy"

    def __init__(
        self, expert: Any, sigma: float, low: np.ndarray, high: np.ndarray, seed: int | None = 0
    ) -> None:
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        self.expert = expert
        self.sigma = float(sigma)
        self.low = np.asarray(low, dtype=np.float32).reshape(-1)
        self.high = np.asarray(high, dtype=np.float32).reshape(-1)
        self.reseed(seed)

    @property
    def act_dim(self) -> int:
        return int(self.low.shape[0])

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        if expert_actions is None:
            expert_actions = np.asarray(self.expert(obs), np.float32)
        noise = self._rng.standard_normal(expert_actions.shape) * self.sigma
        return np.clip(expert_actions + noise, self.low, self.high).astype(np.float32)

    def __repr__(self) -> str:
        return f"NoisyAdversary(sigma={self.sigma:g}, expert={describe_policy(self.expert)})"


class DiscreteFlippedAdversary(Adversary):
    """The opposite of the expert's action id: ``opposite[expert(obs)]``, on a discrete task.

    The discrete analogue of ``-expert(obs)`` (the same sign error between intent and logged
    command): ``opposite[k]`` is the id whose control is minus action ``k``'s control.

    Args:
        expert: callable ``obs (N, obs_dim) -> (N,)`` integer ids.
        opposite: ``(n_actions,)`` int, the task's ``opposite_actions``.
    """

    kind = "flipped"
    action_dtype = np.int64

    def __init__(self, expert: Any, opposite: np.ndarray) -> None:
        self.expert = expert
        self.opposite = np.asarray(opposite, dtype=np.int64).reshape(-1)
        n = self.n_actions
        if not ((self.opposite >= 0) & (self.opposite < n)).all():
            raise ValueError(f"opposite must map ids to ids in [0, {n}), got {self.opposite}")

    @property
    def n_actions(self) -> int:
        return int(self.opposite.shape[0])

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        if expert_actions is None:
            expert_actions = np.asarray(self.expert(obs))
        ids = _check_ids(expert_actions, self.n_actions, "the expert")
        return self.opposite[ids]

    def __repr__(self) -> str:
        return f"DiscreteFlippedAdversary(expert={describe_policy(self.expert)})"


class DiscreteRandomAdversary(RandomizedAdversary):
    """Uniform action ids in ``[0, n_actions)``, ignoring the state (the discrete ``random``).

    Args:
        n_actions: number of actions, >= 2.
        seed: seed of the generator (``reseed`` changes it).
    """

    kind = "random"
    action_dtype = np.int64

    def __init__(self, n_actions: int, seed: int | None = 0) -> None:
        if int(n_actions) < 2:
            raise ValueError(f"n_actions must be >= 2, got {n_actions}")
        self.n_actions = int(n_actions)
        self.reseed(seed)

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        return self._rng.integers(0, self.n_actions, size=np.asarray(obs).shape[0], dtype=np.int64)

    def __repr__(self) -> str:
        return f"DiscreteRandomAdversary(n_actions={self.n_actions})"


class DiscreteNoisyAdversary(RandomizedAdversary):
    """The expert's id, replaced with probability ``p`` by a uniform random id (the discrete
    ``noisy``: a mis-pressed key). The random id may equal the expert's.

    Args:
        expert: callable ``obs (N, obs_dim) -> (N,)`` integer ids.
        p: probability of a random action, in (0, 1].
        n_actions: number of actions.
        seed: seed of the generator (``reseed`` changes it).
    """

    kind = "noisy"
    action_dtype = np.int64

    def __init__(self, expert: Any, p: float, n_actions: int, seed: int | None = 0) -> None:
        if not (np.isfinite(p) and 0.0 < p <= 1.0):
            raise ValueError(f"p must be a probability in (0, 1], got {p!r}")
        self.expert = expert
        self.p = float(p)
        self.n_actions = int(n_actions)
        self.reseed(seed)

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        if expert_actions is None:
            expert_actions = np.asarray(self.expert(obs))
        ids = _check_ids(expert_actions, self.n_actions, "the expert").copy()
        swap = self._rng.random(ids.shape[0]) < self.p
        ids[swap] = self._rng.integers(0, self.n_actions, size=int(swap.sum()), dtype=np.int64)
        return ids

    def __repr__(self) -> str:
        return f"DiscreteNoisyAdversary(p={self.p:g}, expert={describe_policy(self.expert)})"


def _check_ids(actions: np.ndarray, n_actions: int, who: str) -> np.ndarray:
    """``(N,)`` or ``(N, 1)`` integer ids in range -> ``(N,) int64``; ValueError otherwise."""
    a = np.asarray(actions)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"{who} must return integer action ids (N,) on a Discrete({n_actions}) task, "
            f"got {a.dtype} of shape {a.shape}"
        )
    if len(a) and (a.min() < 0 or a.max() >= n_actions):
        raise ValueError(
            f"{who} returned action ids outside [0, {n_actions}): {a.min()}..{a.max()}"
        )
    return a.astype(np.int64)


class PolicyAdversary(Adversary):
    """A demonstrator that is itself a trained policy (SB3, exported like an expert).

    Args:
        policy: an :class:`~choicebc.experts.ExpertPolicy`.
    """

    kind = "policy"

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    @property
    def obs_dim(self) -> int:
        return self.policy.obs_dim

    @property
    def act_dim(self) -> int:
        return self.policy.act_dim

    @property
    def env_id(self) -> str:
        return self.policy.env_id

    def from_expert_actions(self, obs: np.ndarray, expert_actions: np.ndarray | None) -> np.ndarray:
        return np.asarray(self.policy(obs), dtype=np.float32)

    def __repr__(self) -> str:
        card = self.policy.card
        ret = card.get("mean_return", card.get("expert_mean_return"))
        ret = card.get("train_eval_mean_return") if ret is None else ret
        ret_text = "" if ret is None else f", return {ret:.0f}"
        return f"{type(self).__name__}({card['env_id']}, {card.get('algo', '?')}{ret_text})"


class SaboteurAdversary(PolicyAdversary):
    """A policy trained to minimise the task reward.

    Stands for a competent demonstrator pursuing the wrong objective, or data poisoning: its
    actions are smooth and state-consistent, so nothing but their effect gives them away.
    Its card says ``"objective": "minimize"``.
    """

    kind = "saboteur"


class MediumAdversary(PolicyAdversary):
    """A weaker operator: an intermediate checkpoint of the expert's own SAC training, at 30-60 %
    of the expert's return (D4RL's "medium"). Competent and consistent, just worse: the
    demonstrator real multi-operator datasets hold most often. Its card says
    ``"kind": "medium"`` and records the training step it comes from and its measured return.
    """

    kind = "medium"


# ---------------------------------------------------------------------- saboteur files
def saboteur_train_command(env_id: str) -> str:
    return (
        f"choicebc expert train {env_id} --objective minimize --out-dir runs/saboteurs "
        f"(then copy runs/saboteurs/{env_id}-minimize/best/ to {saboteur_dir(env_id)})"
    )


def load_saboteur(env_id: str, path: str | Path | None = None) -> SaboteurAdversary:
    """The saboteur for ``env_id``: the shipped one, or the expert folder at ``path``.

    Raises:
        SaboteurNotFoundError: none shipped (the message gives the training command).
        ExpertLoadError: the folder is unreadable, for another env, or trained to maximise.
    """
    policy = _load_policy_demonstrator(
        "saboteur",
        env_id,
        Path(path) if path is not None else saboteur_dir(env_id),
        f"Train one (reward-minimising SB3 policy) with `{saboteur_train_command(env_id)}`, or "
        "pass path=<its best/ folder>",
        objective="minimize",
        wrong_objective=f"a reward-maximising expert, not a saboteur: train one with "
        f"`{saboteur_train_command(env_id)}`",
    )
    return SaboteurAdversary(policy)


def medium_train_command(env_id: str) -> str:
    return (
        f"choicebc expert train {env_id} --seed <the expert card's seed> --snapshots "
        f"--eval-every 5000 --out-dir runs/medium, then choicebc expert medium {env_id} "
        f"--run-dir runs/medium/{env_id}"
    )


def load_medium(env_id: str, path: str | Path | None = None) -> MediumAdversary:
    """The medium demonstrator for ``env_id``: the shipped one, or the folder at ``path``.

    Raises:
        SaboteurNotFoundError: none shipped (the message gives the commands that make one).
        ExpertLoadError: the folder is unreadable, for another env, or not a medium.
    """
    policy = _load_policy_demonstrator(
        "medium demonstrator",
        env_id,
        Path(path) if path is not None else medium_dir(env_id),
        f"Make one with `{medium_train_command(env_id)}`, or pass path=<a snapshot folder>",
        objective="maximize",
        wrong_objective="a saboteur, not a medium demonstrator",
    )
    return MediumAdversary(policy)


def _load_policy_demonstrator(
    what: str, env_id: str, folder: Path, how_to_make: str, objective: str, wrong_objective: str
) -> Any:
    """The exported SB3 policy in ``folder``, checked: for ``env_id``, of ``objective``."""
    from choicebc.experts import ExpertLoadError, ExpertPolicy

    if not (folder / "card.json").is_file():
        raise SaboteurNotFoundError(f"no {what} for {env_id!r} at {folder}. {how_to_make}")
    policy = ExpertPolicy.load(folder)
    if policy.env_id != env_id:
        raise ExpertLoadError(f"the {what} in {folder} is for {policy.env_id}, not {env_id}")
    if policy.card.get("objective", "maximize") != objective:
        raise ExpertLoadError(f"{folder} holds {wrong_objective}")
    return policy


# ---------------------------------------------------------------------- factory
def make_adversary(kind: str, expert: Any, **kwargs: Any) -> Adversary:
    """An adversary of ``kind`` for ``expert``.

    Args:
        kind: ``"flipped"``, ``"random"``, ``"noisy"``, ``"saboteur"`` or ``"medium"`` (see the
            module doc for the failure each stands for).
        expert: the expert callable ``obs (N, obs_dim) -> actions (N, act_dim)``.
        **kwargs:
            ``env_id``: the task, used for the action box (``random``, ``noisy``) and to find
            the saboteur; defaults to ``expert.env_id`` when the expert has one.
            ``low``, ``high``: the action box, instead of ``env_id``.
            ``sigma``: noise std of ``noisy``, in action units (default 0.3; Box tasks).
            ``p``: probability of a random id of ``noisy`` on a discrete task (default 0.3).
            ``seed``: generator seed of ``random`` / ``noisy`` (default 0).
            ``path``: a saboteur / medium folder, instead of the shipped one.

    Raises:
        UnknownAdversaryError: unknown ``kind`` (the message lists the known ones).
        TypeError: ``expert`` is not callable, or a keyword does not apply to ``kind`` (or to
            the task's action space: ``sigma``/``low``/``high`` on a discrete task, ``p`` on a
            Box task).
        ValueError: the action box cannot be determined, ``sigma <= 0``, ``p`` outside
            (0, 1], or ``saboteur`` / ``medium`` on a discrete task.
        SaboteurNotFoundError: ``saboteur`` / ``medium`` without a shipped or given policy.
    """
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownAdversaryError(
            f"unknown adversary {kind!r}.{hint} Known kinds: {', '.join(KINDS)}"
        )
    if not callable(expert):
        raise TypeError(
            f"expert must be a callable obs (N, obs_dim) -> actions (N, act_dim), "
            f"got {type(expert).__name__}"
        )
    task = _discrete_task(expert, kwargs)
    if task is not None:
        return _make_discrete_adversary(kind, expert, task, kwargs)
    allowed = {
        "flipped": {"env_id"},
        "random": {"env_id", "low", "high", "seed"},
        "noisy": {"env_id", "low", "high", "seed", "sigma"},
        "saboteur": {"env_id", "path"},
        "medium": {"env_id", "path"},
    }[kind]
    unexpected = set(kwargs) - allowed
    if unexpected:
        raise TypeError(
            f"adversary {kind!r} takes {sorted(allowed) or 'no keyword arguments'}, "
            f"got {sorted(unexpected)}"
        )
    if kind == "flipped":
        return FlippedAdversary(expert)
    if kind == "saboteur":
        return load_saboteur(_env_id(expert, kwargs, kind), kwargs.get("path"))
    if kind == "medium":
        return load_medium(_env_id(expert, kwargs, kind), kwargs.get("path"))
    low, high = _action_box(expert, kwargs, kind)
    if kind == "random":
        return RandomAdversary(low, high, seed=kwargs.get("seed", 0))
    return NoisyAdversary(expert, kwargs.get("sigma", 0.3), low, high, seed=kwargs.get("seed", 0))


def _discrete_task(expert: Any, kwargs: dict) -> Any:
    """The task named by ``env_id=`` (or ``expert.env_id``) if its action is discrete."""
    from choicebc.envs import is_discrete

    env_id = kwargs.get("env_id") or getattr(expert, "env_id", None)
    if env_id is None:
        return None
    task = get_task(str(env_id))
    return task if is_discrete(task) else None


def _make_discrete_adversary(kind: str, expert: Any, task: Any, kwargs: dict) -> Adversary:
    if kind in ("saboteur", "medium"):
        raise ValueError(
            f"no {kind} for {task.env_id}: the shipped {kind}s are continuous SB3 actors and this "
            "task's action is discrete. Pass your own callable obs -> action ids as the "
            "adversary (cb.collect(..., adversary=my_policy))"
        )
    allowed = {
        "flipped": {"env_id"},
        "random": {"env_id", "seed"},
        "noisy": {"env_id", "seed", "p"},
    }
    unexpected = set(kwargs) - allowed[kind]
    if unexpected:
        box_only = unexpected & {"low", "high", "sigma"}
        hint = (
            f" ({', '.join(sorted(box_only))} only apply to Box actions; the discrete noisy "
            "adversary takes p=, the probability of a random action id)"
            if box_only
            else ""
        )
        raise TypeError(
            f"adversary {kind!r} on the discrete task {task.env_id} takes "
            f"{sorted(allowed[kind])}, got {sorted(unexpected)}{hint}"
        )
    seed = kwargs.get("seed", 0)
    if kind == "flipped":
        return DiscreteFlippedAdversary(expert, task.opposite_actions)
    if kind == "random":
        return DiscreteRandomAdversary(task.n_actions, seed=seed)
    return DiscreteNoisyAdversary(expert, kwargs.get("p", 0.3), task.n_actions, seed=seed)


def _env_id(expert: Any, kwargs: dict, kind: str) -> str:
    env_id = kwargs.get("env_id") or getattr(expert, "env_id", None)
    if env_id is None:
        raise ValueError(
            f"adversary {kind!r} needs the task: pass env_id='...' (the expert has no env_id)"
        )
    return str(env_id)


def _action_box(expert: Any, kwargs: dict, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if "low" in kwargs or "high" in kwargs:
        if "low" not in kwargs or "high" not in kwargs:
            raise ValueError("pass both low= and high= (the action box)")
        return np.asarray(kwargs["low"], np.float32), np.asarray(kwargs["high"], np.float32)
    if kwargs.get("env_id") is None and getattr(expert, "env_id", None) is None:
        raise ValueError(
            f"adversary {kind!r} needs the action box: pass env_id='...' or low=/high= "
            "(the expert has no env_id)"
        )
    task = get_task(_env_id(expert, kwargs, kind))
    return task.action_low, task.action_high


def describe_policy(policy: Any) -> str:
    """A stable one-line description of a policy, recorded in DemoSet files.

    Never contains a memory address, so two runs with the same inputs write the same file.
    """
    if policy is None:
        return "none"
    desc = getattr(policy, "description", None)
    if isinstance(desc, str):
        return desc
    card = getattr(policy, "card", None)
    if isinstance(card, dict) and "env_id" in card:
        parts = [str(card["env_id"]), str(card.get("algo", "?"))]
        if "seed" in card:
            parts.append(f"seed {card['seed']}")
        if "total_steps" in card:
            parts.append(f"{card['total_steps']} steps")
        if "expert_mean_return" in card:
            parts.append(f"return {card['expert_mean_return']:.1f}")
        return f"{type(policy).__name__}({', '.join(parts)})"
    if inspect.isfunction(policy) or inspect.ismethod(policy) or inspect.isbuiltin(policy):
        return f"{policy.__module__}.{policy.__qualname__}"
    text = " ".join(repr(policy).split())
    if re.search(r" at 0x[0-9a-fA-F]+", text):
        return f"{type(policy).__module__}.{type(policy).__qualname__}"
    return text
