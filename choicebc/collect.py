"""Record demonstrations that mix an expert and an adversary at a known ratio: ``cb.collect``.

Three ways to mix, each a different real failure (``ratio`` is the probability of corruption):

* ``mix="step"`` — each step's actor is drawn independently and its action executed: a careless
  operator who is sometimes not in control;
* ``mix="episode"`` — whole episodes come from the adversary: a bad operator among good ones;
* ``mix="label"`` — the expert always drives; the *recorded* action is the adversary's with
  probability ``ratio``: annotation noise, the paper's eq. (1)–(2) setting (the states come from
  the expert's distribution, only the labels are corrupt).

Reproducibility: with the same seed the file is bit-for-bit identical on the same machine. The
corruption draws of episode ``j`` come from its own generator, seeded by ``(seed, j)``, and episode
``j`` starts from the simulator's ``episode_seed(seed, j)``; so with row-independent deterministic
actors (the shipped experts, ``flipped``) the data do not even depend on ``num_envs``.
Stochastic adversaries (``random``, ``noisy``) are reseeded from ``seed`` at the start.

Budgets: ``episodes=E`` records episodes ``0 .. E-1``, each run to its end. ``transitions=M``
records episodes ``0, 1, 2, ...`` in that order until they hold ``M`` steps, cutting the last one
(its last step is marked ``truncated``); episodes are never picked by how fast they finish, which
would favour short ones.

On the ``cpu`` backend two half-batches are in flight, so the policies' forward passes overlap
the physics (as in :func:`choicebc.evaluate`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from choicebc.adversaries import Adversary, describe_policy, make_adversary
from choicebc.demoset import DemoSet
from choicebc.envs import get_task, is_discrete
from choicebc.sim import ActionError, EpisodeSchedule, make_batched, resolve_backend
from choicebc.sim.base import check_count, check_discrete_actions, check_num_envs
from choicebc.threads import torch_threads

MIXES = ("step", "episode", "label")
_MIX_STREAM = 0x6D6978  # "mix": corruption draws, independent of the env's reset stream
_ADVERSARY_STREAM = 0x616476  # "adv": the adversary's own generator


class PolicyDimensionError(ValueError):
    """An expert or adversary whose observation/action sizes (or env) do not fit the task."""


# ---------------------------------------------------------------------- actors
class _Actors:
    """Expert + adversary for one task: executed and recorded actions for a batch.

    Actions are validated (shape, finite) and clipped to the action box, as the simulator
    would run them; the clipped values are what the DemoSet records. On a discrete task they
    are integer ids, validated and recorded as ``(n, 1) int64``.
    """

    def __init__(self, task: Any, expert: Any, adversary: Any, mix: str) -> None:
        from choicebc.evaluation import as_policy_fn

        self.task, self.mix = task, mix
        self.low, self.high = task.action_low, task.action_high
        self.n_actions: int | None = task.n_actions if is_discrete(task) else None
        self.dtype = np.float32 if self.n_actions is None else np.int64
        self.expert_fn = as_policy_fn(expert)
        # flipped/noisy built on this very expert reuse its actions: one forward pass per step
        self.derived = isinstance(adversary, Adversary) and adversary.expert is expert
        self.adversary_fn: Callable | None = None
        if adversary is not None:
            self.adversary_fn = (
                adversary.from_expert_actions if self.derived else as_policy_fn(adversary)
            )
        self._first_call = {"expert": True, "adversary": True}

    def act(self, obs: np.ndarray, corrupt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``obs (n, obs_dim)``, ``corrupt (n,) bool`` -> ``executed, recorded (n, act_dim)``."""
        need_expert = self.derived or self.mix == "label" or not corrupt.all()
        expert = self._call("expert", self.expert_fn, obs) if need_expert else None
        recorded = expert
        if recorded is None:
            recorded = np.zeros((len(obs), self.task.act_dim), self.dtype)
        if corrupt.any():
            rows = np.flatnonzero(corrupt)
            if self.derived:
                adv = self._call("adversary", self.adversary_fn, obs[rows], expert[rows])
            else:
                adv = self._call("adversary", self.adversary_fn, obs[rows])
            recorded = recorded.copy()
            recorded[rows] = adv
        if self.n_actions is not None:  # ids, validated in _call: nothing to clip
            return (expert if self.mix == "label" else recorded), recorded
        recorded = np.clip(recorded, self.low, self.high, dtype=np.float32)
        if self.mix == "label":
            return np.clip(expert, self.low, self.high, dtype=np.float32), recorded
        return recorded, recorded

    def _call(self, name: str, fn: Callable, obs: np.ndarray, *extra: Any) -> np.ndarray:
        env_id, act_dim = self.task.env_id, self.task.act_dim
        if self._first_call[name]:
            self._first_call[name] = False
            try:
                out = fn(obs, *extra)
            except Exception as exc:
                raise PolicyDimensionError(
                    f"the {name} failed on {env_id} observations of shape {obs.shape} "
                    f"(float32): {type(exc).__name__}: {exc}. Is it a policy for {env_id}?"
                ) from exc
        else:
            out = fn(obs, *extra)
        if self.n_actions is not None:
            try:
                ids = check_discrete_actions(out, obs.shape[0], self.n_actions)
            except ActionError as exc:
                raise ActionError(f"the {name} returned invalid actions: {exc}") from None
            return ids[:, None]
        try:
            actions = np.asarray(out, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ActionError(f"the {name} returned non-numeric actions: {exc}") from None
        if actions.shape != (obs.shape[0], act_dim):
            raise PolicyDimensionError(
                f"the {name} returned actions of shape {actions.shape} for observations "
                f"{obs.shape}; {env_id} needs ({obs.shape[0]}, {act_dim}): one {act_dim}-dim "
                "action per row"
            )
        if not np.isfinite(actions).all():
            row = int(np.flatnonzero(~np.isfinite(actions).all(axis=1))[0])
            raise ActionError(
                f"the {name} returned NaN/inf actions (row {row}: {actions[row].tolist()}) "
                f"for obs {obs[row].tolist()}; check its weights and inputs"
            )
        return actions


def _check_declared_dims(name: str, policy: Any, task: Any) -> None:
    """Fail before simulating when a policy declares an env or sizes that do not fit."""
    declared_env = getattr(policy, "env_id", None)
    if isinstance(declared_env, str) and declared_env != task.env_id:
        raise PolicyDimensionError(
            f"the {name} is for {declared_env}, not {task.env_id}: load the {name} of "
            f"{task.env_id} (e.g. cb.load_expert({task.env_id!r}))"
        )
    for attr, need in (("obs_dim", task.obs_dim), ("act_dim", task.act_dim)):
        have = getattr(policy, attr, None)
        if isinstance(have, int | np.integer) and int(have) != need:
            raise PolicyDimensionError(
                f"the {name} has {attr}={have} but {task.env_id} has {attr}={need}"
            )


# ---------------------------------------------------------------------- recording
def _episode_draws(seed: int, episode_index: int, max_steps: int) -> tuple[float, np.ndarray]:
    """Episode ``j``'s corruption draws: one for the episode, one per step (uniform [0, 1))."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(episode_index), _MIX_STREAM])
    return float(rng.random()), rng.random(max_steps)


class _Episodes:
    """Finished episodes by index, and when the budget is complete."""

    def __init__(self, episodes: int | None, transitions: int | None, bar: Any) -> None:
        self.episodes, self.transitions, self.bar = episodes, transitions, bar
        self.records: dict[int, dict[str, Any]] = {}
        self.prefix = 0  # episodes 0 .. prefix-1 are all recorded
        self.prefix_steps = 0
        self.complete = False

    def add(self, index: int, record: dict[str, Any]) -> None:
        if self.complete or (self.episodes is not None and index >= self.episodes):
            return  # an extra episode of a backend that does not stop at the limit
        self.records[index] = record
        if self.episodes is not None:
            self.bar.update(1)
            self.complete = len(self.records) == self.episodes
            return
        while self.prefix in self.records and not self.complete:
            self.prefix_steps += len(self.records[self.prefix]["rewards"])
            self.prefix += 1
            self.complete = self.prefix_steps >= self.transitions

    def stepped(self, rows: int) -> None:
        if self.transitions is not None and not self.complete:
            self.bar.update(min(rows, self.bar.total - self.bar.n))

    def ordered(self) -> list[dict[str, Any]]:
        """Episodes in index order; under a transition budget the last one is cut to fit."""
        if self.episodes is not None:
            return [self.records[j] for j in range(self.episodes)]
        eps = [self.records[j] for j in range(self.prefix)]
        excess = self.prefix_steps - self.transitions
        if excess > 0:
            eps[-1] = _cut(eps[-1], len(eps[-1]["rewards"]) - excess)
        return eps


def _cut(ep: dict[str, Any], k: int) -> dict[str, Any]:
    """The first ``k`` steps of a recorded episode, ending ``truncated`` (budget reached)."""
    out = dict(ep)
    for key in ("obs", "actions", "executed_actions", "rewards", "is_corrupt"):
        out[key] = ep[key][:k]
    out["final_obs"] = ep["obs"][k]
    out["terminated"] = np.zeros(k, bool)
    out["truncated"] = np.zeros(k, bool)
    out["truncated"][-1] = True
    out["return"] = float(np.cumsum(ep["rewards"][:k])[-1])  # step order, as the simulator sums
    return out


class _Lane:
    """One batched env and the per-slot buffers of the episodes running in it."""

    def __init__(self, env: Any, task: Any, ratio: float, mix: str, seed: int) -> None:
        n, t_max = env.num_envs, task.max_episode_steps
        self.env, self.ratio, self.mix, self.seed, self.t_max = env, ratio, mix, seed, t_max
        dtype = np.int64 if is_discrete(task) else np.float32  # discrete: (.., 1) action ids
        self.obs = np.zeros((n, t_max, task.obs_dim), np.float32)
        self.recorded = np.zeros((n, t_max, task.act_dim), dtype)
        self.executed = np.zeros((n, t_max, task.act_dim), dtype)
        self.rewards = np.zeros((n, t_max), np.float64)
        self.corrupt = np.zeros((n, t_max), bool)
        self.draws = np.zeros((n, t_max), np.float64)
        self.episode_corrupt = np.zeros(n, bool)
        self.t = np.zeros(n, np.int64)
        self.index = np.zeros(n, np.int64)
        self.seeds = np.zeros(n, np.int64)
        self.active = np.ones(n, bool)
        self.rows = np.arange(n)
        self.current_obs = np.zeros((n, task.obs_dim), np.float32)

    def reset(self) -> None:
        obs, info = self.env.reset()
        self.current_obs = obs
        self._begin(np.arange(self.env.num_envs), info)

    def _begin(self, slots: np.ndarray, info: dict[str, Any]) -> None:
        active = info.get("active")
        if active is not None:
            self.active = np.asarray(active, bool).copy()
            self.rows = np.flatnonzero(self.active)
        for slot in slots.tolist():
            if not self.active[slot]:
                continue
            j = int(info["episode_index"][slot])
            self.index[slot], self.seeds[slot], self.t[slot] = j, info["episode_seed"][slot], 0
            episode_draw, self.draws[slot] = _episode_draws(self.seed, j, self.t_max)
            self.episode_corrupt[slot] = episode_draw < self.ratio

    def decide(self, actors: _Actors) -> np.ndarray:
        """Actions to execute now ``(N, act_dim)``; the step's records go into the buffers."""
        rows, t = self.rows, self.t[self.rows]
        obs = self.current_obs[rows]
        if self.mix == "episode":
            corrupt = self.episode_corrupt[rows]
        else:
            corrupt = self.draws[rows, t] < self.ratio
        executed, recorded = actors.act(obs, corrupt)
        self.obs[rows, t] = obs
        self.recorded[rows, t] = recorded
        self.executed[rows, t] = executed
        self.corrupt[rows, t] = corrupt
        if len(rows) == self.env.num_envs:
            return executed
        full = np.zeros((self.env.num_envs, executed.shape[1]), executed.dtype)
        full[rows] = executed
        return full

    def record(self, step: tuple, sink: _Episodes) -> None:
        """Store a step's results; hand finished episodes to ``sink`` and start the next ones."""
        obs, reward, terminated, truncated, info = step
        rows = self.rows
        self.rewards[rows, self.t[rows]] = reward[rows]
        self.t[rows] += 1
        sink.stepped(len(rows))
        done = np.flatnonzero(terminated | truncated)
        for slot in done.tolist():
            length = int(self.t[slot])
            last = np.arange(length) == length - 1
            sink.add(
                int(self.index[slot]),
                {
                    "obs": self.obs[slot, :length].copy(),
                    "actions": self.recorded[slot, :length].copy(),
                    "executed_actions": self.executed[slot, :length].copy(),
                    "rewards": self.rewards[slot, :length].copy(),
                    "is_corrupt": self.corrupt[slot, :length].copy(),
                    "terminated": last & bool(terminated[slot]),
                    "truncated": last & bool(truncated[slot]),
                    "final_obs": np.asarray(info["final_obs"][slot], np.float32).copy(),
                    "return": float(info["episode_return"][slot]),
                    "seed": int(self.seeds[slot]),
                },
            )
        self.current_obs = obs
        if done.size:
            self._begin(done, info)


# ---------------------------------------------------------------------- the collector
def collect(
    env_id: str,
    expert: Any,
    adversary: Any = None,
    ratio: float = 0.0,
    mix: str = "step",
    *,
    episodes: int | None = None,
    transitions: int | None = None,
    num_envs: int | None = None,
    seed: int = 0,
    backend: str = "cpu",
    progress: bool = True,
    **env_kwargs: Any,
) -> DemoSet:
    """Roll out an expert mixed with an adversary and record every step with its true label.

    Args:
        env_id: task id, e.g. ``"HalfCheetah-v5"``.
        expert: callable ``obs (N, obs_dim) float32 -> actions (N, act_dim)`` (e.g.
            ``cb.load_expert(env_id)``, or your own demonstrator; a ``torch.nn.Module`` is
            called in inference mode).
        adversary: a callable like ``expert``, an adversary kind for :func:`make_adversary`
            (``"flipped"``, ``"random"``, ``"noisy"``, ``"saboteur"``), or ``None`` (then
            ``ratio`` must be 0).
        ratio: probability of corruption, in ``[0, 1]`` (per step, or per episode for
            ``mix="episode"``).
        mix: ``"step"``, ``"episode"`` or ``"label"`` (see the module doc).
        episodes: record exactly episodes ``0 .. episodes-1`` (give this or ``transitions``).
        transitions: record exactly this many steps (episodes in order, the last one cut).
        num_envs: parallel simulations (default: up to 256, no more than the budget needs).
        seed: one seed for the episodes' initial states, the corruption draws and stochastic
            adversaries: the same seed gives a bit-identical file.
        backend: ``"cpu"`` (default), ``"gym"``, ``"gpu"`` or ``"auto"`` (see ``make_batched``).
        progress: show a progress bar.
        **env_kwargs: backend options (``cpu``: ``nthread``).

    Returns:
        A :class:`~choicebc.demoset.DemoSet` (``demos.save(path)`` writes it).

    Raises:
        ValueError: ``ratio`` outside ``[0, 1]``, an unknown ``mix``, not exactly one budget,
            or ``ratio > 0`` without an adversary.
        UnknownEnvError: unknown ``env_id``.
        UnknownAdversaryError: unknown adversary kind.
        PolicyDimensionError: expert/adversary made for another env, or with observation/action
            sizes that do not fit ``env_id``.
        ActionError: an actor returned NaN/inf actions.
    """
    task = get_task(env_id)
    ratio = _check_ratio(ratio)
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}: use one of {', '.join(MIXES)}")
    if (episodes is None) == (transitions is None):
        raise ValueError("give exactly one budget: episodes=... or transitions=...")
    if episodes is not None:
        budget = check_count("episodes", episodes)
    else:
        budget = check_count("transitions", transitions)
    if not callable(expert):
        raise TypeError(f"expert must be callable obs -> actions, got {type(expert).__name__}")
    if isinstance(adversary, str):
        adversary = make_adversary(adversary, expert, env_id=env_id)
    if adversary is None and ratio > 0:
        raise ValueError(f"ratio={ratio} needs an adversary (e.g. adversary='flipped')")
    if adversary is not None and not callable(adversary):
        raise TypeError(f"adversary must be callable or a kind name, got {type(adversary)}")
    _check_declared_dims("expert", expert, task)
    if adversary is not None:
        _check_declared_dims("adversary", adversary, task)
    if num_envs is None:
        per_episode = task.max_episode_steps
        needed = budget if episodes is not None else math.ceil(budget / per_episode)
        num_envs = max(1, min(256, needed))
    n = check_num_envs(num_envs)
    if episodes is not None:
        n = min(n, episodes)
    name = resolve_backend(backend)
    if isinstance(adversary, Adversary):
        adversary.reseed(
            int(np.random.SeedSequence([seed & 0xFFFFFFFF, _ADVERSARY_STREAM]).generate_state(1)[0])
        )

    actors = _Actors(task, expert, adversary, mix)
    unit = "episode" if episodes is not None else "transition"
    bar = tqdm(
        total=budget, unit=unit, desc=f"collect {env_id}", disable=not progress, mininterval=1.0
    )
    sink = _Episodes(episodes, transitions, bar)
    try:
        with torch_threads(1 if name != "gpu" else None):
            if name == "cpu" and n >= 2:
                _run_pipelined(task, actors, sink, n, seed, ratio, mix, episodes, env_kwargs)
            else:
                _run_sequential(task, actors, sink, n, seed, ratio, mix, name, episodes, env_kwargs)
    finally:
        bar.close()
    attrs = _attributes(task, expert, adversary, ratio, mix, seed, n, name, episodes, transitions)
    return DemoSet.from_episodes(sink.ordered(), attrs)


def _run_sequential(task, actors, sink, n, seed, ratio, mix, backend, episodes, kwargs) -> None:
    """Any backend, one batch: policies and physics take turns."""
    if backend == "cpu":
        kwargs = {**kwargs, "schedule": EpisodeSchedule(seed, limit=episodes)}
    env = make_batched(task.env_id, n, backend=backend, seed=seed, **kwargs)
    lane = _Lane(env, task, ratio, mix, seed)
    try:
        lane.reset()
        while not sink.complete:
            if not lane.active.any():
                raise RuntimeError("collection stalled: no slot is running an episode")
            lane.record(env.step(lane.decide(actors)), sink)
    finally:
        env.close()


def _run_pipelined(task, actors, sink, n, seed, ratio, mix, episodes, kwargs) -> None:
    """cpu backend: two half-batches sharing one episode schedule; one half's physics runs on
    MuJoCo's threads while Python records the other half and computes its actions."""
    schedule = EpisodeSchedule(seed, limit=episodes)
    sizes = (math.ceil(n / 2), n // 2)
    envs = [
        make_batched(task.env_id, size, backend="cpu", seed=seed, schedule=schedule, **kwargs)
        for size in sizes
    ]
    try:
        lanes = [_Lane(env, task, ratio, mix, seed) for env in envs]
        for lane in lanes:
            lane.reset()
        actions = [lanes[0].decide(actors), None]
        envs[0].step_async(actions[0])
        in_flight = [True, False]
        actions[1] = lanes[1].decide(actors)
        while not sink.complete:
            progressed = False
            for h in (0, 1):
                other = 1 - h
                if in_flight[h]:
                    envs[h].wait_physics()
                if not in_flight[other] and lanes[other].active.any():
                    envs[other].step_async(actions[other])
                    in_flight[other] = True
                if not in_flight[h]:
                    continue
                lanes[h].record(envs[h].step_wait(), sink)
                in_flight[h] = False
                progressed = True
                if sink.complete:
                    break
                if lanes[h].active.any():
                    actions[h] = lanes[h].decide(actors)
            if not progressed and not sink.complete:
                raise RuntimeError("collection stalled: no slot is running an episode")
    finally:
        for env in envs:
            env.close()


def _attributes(task, expert, adversary, ratio, mix, seed, n, backend, episodes, transitions):
    import gymnasium
    import mujoco

    from choicebc.version import __version__

    version = re.search(r"-v(\d+)$", task.env_id)
    discrete = {"n_actions": int(task.n_actions)} if is_discrete(task) else {}
    return {
        **discrete,
        "env_id": task.env_id,
        "env_version": f"v{version.group(1)}" if version else "",
        "expert": describe_policy(expert),
        "adversary": describe_policy(adversary),
        "adversary_kind": getattr(adversary, "kind", "custom") if adversary is not None else "none",
        "ratio": float(ratio),
        "mix": mix,
        "seed": int(seed),
        "num_envs": int(n),
        "backend": backend,
        "budget": f"episodes={episodes}" if episodes is not None else f"transitions={transitions}",
        "action_low": task.action_low.tolist(),
        "action_high": task.action_high.tolist(),
        "has_labels": True,
        "choicebc_version": __version__,
        "mujoco_version": mujoco.__version__,
        "gymnasium_version": gymnasium.__version__,
        "numpy_version": np.__version__,
    }


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | np.integer | np.floating):
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
    if not 0.0 <= float(ratio) <= 1.0:  # also rejects NaN
        raise ValueError(
            f"ratio must be in [0, 1] (the probability that the adversary acts), got {ratio!r}"
        )
    return float(ratio)


# ---------------------------------------------------------------------- CLI: choicebc collect
@dataclasses.dataclass
class CollectConfig:
    """``choicebc collect ENV_ID OUT``: mixed expert/adversary demonstrations to an .h5 file."""

    env_id: str
    """task id, e.g. HalfCheetah-v5"""
    out: str
    """output DemoSet file (.h5); its folder must exist"""
    adversary: str = "flipped"
    """flipped, random, noisy or saboteur"""
    ratio: float = 0.3
    """probability that the adversary acts (per step, or per episode with --mix episode)"""
    mix: str = "step"
    """step (careless operator), episode (bad operator) or label (annotation noise)"""
    episodes: int | None = None
    """episodes to record (100 when neither --episodes nor --transitions is given)"""
    transitions: int | None = None
    """record exactly this many transitions instead of --episodes"""
    expert: str | None = None
    """expert folder (default: the shipped expert of ENV_ID)"""
    sigma: float = 0.3
    """noise std of the noisy adversary, in action units (Box actions)"""
    noise_p: float = 0.3
    """probability of a random action id of the noisy adversary (discrete actions)"""
    saboteur: str | None = None
    """saboteur folder (default: the shipped saboteur of ENV_ID)"""
    num_envs: int | None = None
    """parallel simulations (default: up to 256)"""
    seed: int = 0
    """seed of episodes, corruption draws and adversary noise (same seed: same file)"""
    backend: str = "cpu"
    """cpu, gym, gpu or auto"""
    overwrite: bool = False
    """replace OUT if it exists"""
    progress: bool = True
    """show a progress bar"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from choicebc.flags import add_dataclass_arguments

    add_dataclass_arguments(parser, CollectConfig)


def resolve_expert(env_id: str, path: str | None = None) -> Any:
    """The expert of ``env_id``: the folder at ``path``, or :func:`~choicebc.load_expert`'s
    (the analytic one of the 2-D tasks, else the shipped one; ``ExpertLoadError`` naming
    ``choicebc expert train`` when none is)."""
    from choicebc.experts import ExpertLoadError, load_expert

    if path is not None and not (Path(path) / "card.json").is_file():
        raise ExpertLoadError(
            f"no expert at {path}: an expert folder holds card.json and actor.safetensors "
            f"(a training run's best/ folder, from `choicebc expert train {env_id}`)"
        )
    return load_expert(env_id, path=path)


def run(args: argparse.Namespace) -> int:
    from choicebc.demoset import check_output_path
    from choicebc.flags import dataclass_from_args

    cfg = dataclass_from_args(CollectConfig, args)
    episodes = 100 if cfg.episodes is None and cfg.transitions is None else cfg.episodes
    try:
        # cheap checks first: fail before loading anything or collecting for an hour
        for flag, count in (
            ("--episodes", cfg.episodes),
            ("--transitions", cfg.transitions),
            ("--num-envs", cfg.num_envs),
        ):
            if count is not None:
                check_count(flag, count)
        _check_ratio(cfg.ratio)
        if cfg.mix not in MIXES:
            raise ValueError(f"unknown mix {cfg.mix!r}: use one of {', '.join(MIXES)}")
        check_output_path(cfg.out, cfg.overwrite)
        get_task(cfg.env_id)
        expert = resolve_expert(cfg.env_id, cfg.expert)
        kwargs: dict[str, Any] = {"env_id": cfg.env_id}
        if cfg.adversary == "noisy" and is_discrete(get_task(cfg.env_id)):
            kwargs["p"] = cfg.noise_p
        elif cfg.adversary == "noisy":
            kwargs["sigma"] = cfg.sigma
        if cfg.adversary == "saboteur" and cfg.saboteur:
            kwargs["path"] = cfg.saboteur
        adversary = make_adversary(cfg.adversary, expert, **kwargs)
        demos = collect(
            cfg.env_id,
            expert,
            adversary,
            ratio=cfg.ratio,
            mix=cfg.mix,
            episodes=episodes,
            transitions=cfg.transitions,
            num_envs=cfg.num_envs,
            seed=cfg.seed,
            backend=cfg.backend,
            progress=cfg.progress,
        )
        path = demos.save(cfg.out, overwrite=cfg.overwrite)
    except (ValueError, TypeError, OSError) as exc:
        print(f"choicebc collect: {exc}", file=sys.stderr)
        return 2
    print(demos.summary())
    print(f"wrote {path}")
    return 0
