"""Policy evaluation in the batched simulator: exactly ``episodes`` episodes, each its own seed.

Unbiased by construction: episode ``j`` (``j < episodes``) starts from ``episode_seed(seed, j)``
and every one of them is run to its end, however long it takes; the result lists them in episode
order. (Taking "the first n episodes that finish" in a vectorised env would favour short ones.)
With a policy that treats rows independently, the returns do not depend on ``num_envs``.

On the ``cpu`` backend two half-batches run on two threads, each on half of the cores: each thread
steps its half, computes the observations, then the actions; MuJoCo and torch release the GIL,
so one half's policy runs while the other half's physics does and no core waits for the policy.
"""

from __future__ import annotations

import concurrent.futures as concurrent_futures
import contextlib
import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from choicebc.cards import reference_returns
from choicebc.envs import get_task
from choicebc.sim import EpisodeSchedule, make_batched, resolve_backend
from choicebc.sim.base import check_count
from choicebc.threads import torch_threads

PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Returns of ``episodes`` evaluation episodes, in episode order.

    Attributes:
        env_id: the task.
        returns: ``(episodes,) float64`` undiscounted return of episode ``j``.
        lengths: ``(episodes,) int64`` env-steps of episode ``j``.
        seeds: ``(episodes,) int64`` the seed episode ``j`` started from.
        unstable: ``(episodes,) bool`` episodes cut short by a simulation instability.
        steps_per_second: env-steps of these episodes per second of wall time (reset included,
            env construction excluded).
        wall_time: seconds.
        backend: the backend that ran (``cpu``, ``gpu`` or ``gym``).
        num_envs: parallel slots used.
        seed: the evaluation seed.
        reference: ``(random_return, expert_return)`` of the task, or ``None``.
    """

    env_id: str
    returns: np.ndarray
    lengths: np.ndarray
    seeds: np.ndarray
    unstable: np.ndarray
    steps_per_second: float
    wall_time: float
    backend: str
    num_envs: int
    seed: int
    reference: tuple[float, float] | None = None

    @property
    def episodes(self) -> int:
        return int(self.returns.shape[0])

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))

    @property
    def normalized_score(self) -> float | None:
        """``100 * (mean - random) / (expert - random)`` (D4RL convention), or ``None``."""
        if self.reference is None:
            return None
        random_return, expert_return = self.reference
        if expert_return == random_return:
            return None
        return 100.0 * (self.mean_return - random_return) / (expert_return - random_return)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, summary statistics included."""
        return {
            "env_id": self.env_id,
            "episodes": self.episodes,
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "mean_length": self.mean_length,
            "normalized_score": self.normalized_score,
            "steps_per_second": self.steps_per_second,
            "wall_time": self.wall_time,
            "backend": self.backend,
            "num_envs": self.num_envs,
            "seed": self.seed,
            "reference": list(self.reference) if self.reference else None,
            "unstable_episodes": int(self.unstable.sum()),
            "returns": self.returns.tolist(),
            "lengths": self.lengths.tolist(),
            "seeds": self.seeds.tolist(),
        }

    def __str__(self) -> str:
        score = self.normalized_score
        norm = "" if score is None else f", normalized score {score:.1f}"
        return (
            f"{self.env_id}: return {self.mean_return:.1f} ± {self.std_return:.1f} over "
            f"{self.episodes} episodes{norm}; mean length {self.mean_length:.1f}; "
            f"{self.steps_per_second:,.0f} env-steps/s ({self.backend}, {self.num_envs} envs)"
        )


def as_policy_fn(policy: Any) -> PolicyFn:
    """A batched ``obs (N, obs_dim) float32 -> actions (N, act_dim)`` numpy function.

    Args:
        policy: a ``torch.nn.Module`` (called on a float tensor on its own device, in inference
            mode) or any callable on numpy arrays (e.g. ``BCPolicy.act``, an expert).

    Raises:
        TypeError: ``policy`` is neither.
    """
    if _is_module(policy):
        torch = sys.modules["torch"]
        tensor = next(iter(policy.parameters()), None)
        if tensor is None:
            tensor = next(iter(policy.buffers()), None)
        device = tensor.device if tensor is not None else torch.device("cpu")
        dtype = tensor.dtype if tensor is not None and tensor.is_floating_point() else None
        dtype = dtype or torch.float32

        def act_module(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = policy(torch.from_numpy(obs).to(device=device, dtype=dtype))
            if not out.is_floating_point():  # action ids of a discrete policy stay integers
                return out.detach().to("cpu").numpy()
            return out.detach().to("cpu", torch.float32).numpy()

        return act_module
    if callable(policy):
        return lambda obs: np.asarray(policy(obs))
    raise TypeError(
        f"policy must be a callable obs (N, obs_dim) float32 -> actions (N, act_dim) or a "
        f"torch.nn.Module, got {type(policy).__name__}"
    )


@contextlib.contextmanager
def _policy_mode(policy: Any, one_thread: bool) -> Iterator[None]:
    """Eval mode for a Module; one torch thread while MuJoCo's threads own the cores.

    torch's intra-op threads spin while they wait, and on a machine whose cores run physics
    they slow both the policy and the simulation several-fold.
    """
    module = _is_module(policy)
    was_training = bool(module and policy.training)
    if module:
        policy.eval()
    try:
        with torch_threads(1 if one_thread else None):
            yield
    finally:
        if was_training:
            policy.train()


class _EpisodeLog:
    """Collects the outcome of episodes ``0 .. episodes-1`` from steps' ``info``."""

    def __init__(self, episodes: int, bar: Any = None) -> None:
        self.returns = np.full(episodes, np.nan)
        self.lengths = np.zeros(episodes, np.int64)
        self.seeds = np.zeros(episodes, np.int64)
        self.unstable = np.zeros(episodes, bool)
        self.finished = 0
        self.bar = bar  # a tqdm bar counting env-steps, or None
        self._steps = np.zeros(episodes, np.int64)  # steps each episode has run so far

    @property
    def complete(self) -> bool:
        return self.finished == self.returns.shape[0]

    def record(
        self, running: np.ndarray, running_seeds: np.ndarray, done: np.ndarray, info: dict
    ) -> None:
        """Log the episodes that ended (``done``) in slots that ran episodes ``running``."""
        if self.bar is not None:
            # an idle slot repeats its last episode's final length and an episode moved to the
            # other half is reported by both: the maximum per episode counts each step once
            ok = (running >= 0) & (running < self.returns.shape[0])
            np.maximum.at(self._steps, running[ok], info["episode_length"][ok])
            self.bar.update(int(self._steps.sum()) - self.bar.n)
        for slot in np.flatnonzero(done).tolist():
            j = int(running[slot])
            if j >= self.returns.shape[0]:
                continue  # an extra episode a backend without an episode limit started
            self.returns[j] = info["episode_return"][slot]
            self.lengths[j] = info["episode_length"][slot]
            self.seeds[j] = running_seeds[slot]
            self.unstable[j] = info["unstable"][slot]
            self.finished += 1


def evaluate(
    policy: Any,
    env_id: str,
    episodes: int = 100,
    num_envs: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    *,
    pipeline: bool = True,
    progress: bool | str = False,
    **env_kwargs: Any,
) -> EvalResult:
    """Roll ``policy`` out for exactly ``episodes`` episodes of ``env_id``.

    Args:
        policy: callable ``obs (N, obs_dim) float32 ndarray -> actions (N, act_dim)`` or a
            ``torch.nn.Module`` (see :func:`as_policy_fn`). Actions are clipped to the box.
        env_id: task id.
        episodes: number of episodes; episode ``j`` starts from ``episode_seed(seed, j)``.
        num_envs: parallel slots (default ``min(episodes, 256)``; more than ``episodes`` is
            pointless and is capped).
        seed: evaluation seed.
        backend: ``auto``, ``cpu``, ``gpu`` or ``gym`` (see :func:`choicebc.make_batched`).
        pipeline: on ``cpu``, run two half-batches on two threads, each on half of the cores,
            so that one half's policy runs while the other half's physics does; ``False`` runs
            one batch, policy and physics taking turns (a benchmark baseline). A
            ``torch.nn.Module``, or a callable with ``thread_safe = True``, is then called from
            both threads at once; any other callable is called by one thread at a time in a fixed
            order, so that a policy with a random generator gives the same result on every run.
        progress: show a bar of env-steps (its total: ``episodes`` full-length episodes, cut
            to the steps run at the end); a string is the bar's label.
        **env_kwargs: passed to the backend (``cpu``: ``nthread``).

    Returns:
        :class:`EvalResult` with the episodes in episode order.

    Raises:
        UnknownEnvError, ValueError, BackendUnavailableError: as :func:`choicebc.make_batched`;
            ``ValueError`` also for ``episodes < 1``.
        ActionError: the policy returned actions of the wrong shape or with NaN.
    """
    task = get_task(env_id)
    episodes = check_count("episodes", episodes)
    n = min(episodes, 256) if num_envs is None else check_count("num_envs", num_envs)
    n = min(n, episodes)
    if backend == "auto" and getattr(task, "n_actions", None) is not None:
        backend = "cpu"  # discrete-action tasks have no gpu backend
    name = resolve_backend(backend)
    act = as_policy_fn(policy)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        label = progress if isinstance(progress, str) else f"evaluate {env_id}"
        bar = tqdm(total=episodes * task.max_episode_steps, desc=label, unit="step")
    log = _EpisodeLog(episodes, bar)
    try:
        with _policy_mode(policy, one_thread=name != "gpu"):
            if name == "cpu" and pipeline and n >= 2:
                steps_time = _run_threaded(
                    act, env_id, n, seed, log, env_kwargs, concurrent=_thread_safe(policy)
                )
            else:
                steps_time = _run_sequential(act, env_id, n, seed, name, log, env_kwargs)
        if bar is not None:
            bar.total = bar.n  # episodes that ended early: the steps actually run
            bar.set_postfix(ret=f"{np.mean(log.returns):.0f}")
    finally:
        if bar is not None:
            bar.close()
    return EvalResult(
        env_id=env_id,
        returns=log.returns,
        lengths=log.lengths,
        seeds=log.seeds,
        unstable=log.unstable,
        steps_per_second=float(log.lengths.sum() / max(steps_time, 1e-12)),
        wall_time=float(steps_time),
        backend=name,
        num_envs=n,
        seed=int(seed),
        reference=reference_returns(task.env_id),
    )


def _run_sequential(
    act: PolicyFn, env_id: str, n: int, seed: int, backend: str, log: _EpisodeLog, kwargs: dict
) -> float:
    """Any backend, one batch: policy and physics take turns. Returns the wall time."""
    env = make_batched(env_id, n, backend=backend, seed=seed, **kwargs)
    try:
        start = time.perf_counter()
        obs, info = env.reset()
        while not log.complete:
            running, running_seeds = info["episode_index"], info["episode_seed"]
            obs, _, terminated, truncated, info = env.step(act(obs))
            log.record(running, running_seeds, terminated | truncated, info)
        return time.perf_counter() - start
    finally:
        env.close()


class _Aborted(Exception):
    """The other half's worker failed: stop without a result."""


class _Turns:
    """Strict turn-taking between the halves' workers (0, 1, 0, 1, ...; a finished one drops out).

    A worker's Python work between two physics steps happens in its turn, so episodes are handed
    out, and a policy that keeps state (a generator) is called, in the same order on every run.
    """

    def __init__(self, parties: int) -> None:
        self._cond = threading.Condition()
        self._turn = 0
        self._live = [True] * parties
        self._failed = False

    @contextlib.contextmanager
    def turn(self, h: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._turn == h or self._failed)
            if self._failed:
                raise _Aborted
        try:
            yield
        finally:
            with self._cond:
                self._advance()
                self._cond.notify_all()

    def leave(self, h: int, failed: bool = False) -> None:
        with self._cond:
            self._live[h] = False
            self._failed |= failed
            if self._turn == h:
                self._advance()
            self._cond.notify_all()

    def _advance(self) -> None:
        k = len(self._live)
        for i in range(1, k + 1):
            if self._live[(self._turn + i) % k]:
                self._turn = (self._turn + i) % k
                return


def _torch_mode() -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of context managers that put another thread in this thread's torch mode.

    torch's grad and inference modes are per thread: a policy called by the evaluator's threads
    for a caller under ``torch.no_grad()`` must run without grad there too.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return contextlib.nullcontext
    if torch.is_inference_mode_enabled():
        return torch.inference_mode
    if not torch.is_grad_enabled():
        return torch.no_grad
    return contextlib.nullcontext


def _is_module(policy: Any) -> bool:
    """Is ``policy`` a ``torch.nn.Module``? (without importing torch for numpy policies)"""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(policy, torch.nn.Module)


def _thread_safe(policy: Any) -> bool:
    """May ``policy`` be called from two threads at once? torch modules and declared ones."""
    return _is_module(policy) or bool(getattr(policy, "thread_safe", False))


FREE_RUNNING_MIN_HALF = 32
"""Smallest half-batch whose thread runs free (see :func:`_run_threaded`): on fewer rows torch's
small-batch kernels can round a row differently depending on how many rows there are."""


def _run_threaded(
    act: PolicyFn, env_id: str, n: int, seed: int, log: _EpisodeLog, kwargs: dict, concurrent: bool
) -> float:
    """cpu backend: two half-batches, each run by its own thread on half of the cores.

    Each thread loops physics -> observations -> policy for its half; MuJoCo and torch release
    the GIL, so the halves run in parallel and no core waits for the policy. The halves share one
    episode schedule (the faster half runs more episodes).

    With a thread-safe policy (``concurrent``) and halves of at least
    :data:`FREE_RUNNING_MIN_HALF`, the threads run free: which slot runs which episode depends
    on timing, so the policy is called on every row of its half (a fixed batch size) and each
    episode's result does not depend on its slot. Otherwise the threads take strict turns for
    their observation steps and policy calls, in the order of one thread alternating the halves,
    so that a policy with a random generator gives the same result on every run.

    Running free, a thread whose half has nothing left to run takes half of the other half's
    running episodes (:meth:`CpuBatchedEnv.take_episodes`: they continue bit-identically), so
    the last episodes do not finish on one core while the other idles. (With every slot running
    one episode of the same length, the halves otherwise end apart by whatever their physics
    costs differed: 5-8 % of the wall time in HalfCheetah runs here.)
    Returns the wall time.
    """
    from choicebc.sim.cpu import CpuBatchedEnv

    kwargs = {"nthread": max(1, (os.cpu_count() or 2) // 2), **kwargs}
    schedule = EpisodeSchedule(seed, limit=log.returns.shape[0])
    sizes = (math.ceil(n / 2), n // 2)
    halves = [CpuBatchedEnv(env_id, size, seed, schedule=schedule, **kwargs) for size in sizes]
    free = concurrent and min(sizes) >= FREE_RUNNING_MIN_HALF
    turns, cond = _Turns(len(halves)), threading.Condition()
    hungry, live = [False] * len(halves), [True] * len(halves)  # guarded by cond
    caller_mode = _torch_mode()

    def section(h: int) -> contextlib.AbstractContextManager:
        return cond if free else turns.turn(h)

    def feed(h: int) -> None:
        """(Under cond, between steps of half h.) Give half of h's episodes to a hungry half."""
        for other in range(len(halves)):
            if hungry[other]:
                halves[other].take_episodes(halves[h], int(halves[h].active.sum()) // 2)
                hungry[other] = False
                cond.notify_all()

    def wait_for_episodes(h: int) -> bool:
        """(Free running, half h has nothing left.) Take episodes from the other half, if any."""
        with cond:
            others = [o for o in range(len(halves)) if o != h and live[o]]
            if not any(halves[o].active.sum() >= 2 for o in others):
                return False
            hungry[h] = True
            cond.wait_for(lambda: not hungry[h] or not any(live[o] for o in others))
            hungry[h] = False
            return bool(halves[h].active.any())

    def run(h: int) -> None:
        half, failed = halves[h], True
        try:
            with caller_mode():  # the caller's torch grad mode, on this thread too
                with section(h):
                    obs, info = half.reset()
                    actions = None if free else _act_active(act, obs, half)
                while True:
                    if actions is None:
                        actions = act(obs)  # idle slots' rows too: a fixed batch size
                    running, running_seeds = info["episode_index"], info["episode_seed"]
                    half.step_physics(actions)
                    with section(h):
                        obs, _, terminated, truncated, info = half.step_wait()
                        log.record(running, running_seeds, terminated | truncated, info)
                        if free:
                            feed(h)
                        more = bool(half.active.any())
                        actions = None if free or not more else _act_active(act, obs, half)
                    if not more and free and wait_for_episodes(h):
                        obs, info = half.observe()
                        continue
                    if not more:
                        failed = False
                        return
        finally:
            with cond:
                live[h] = False
                cond.notify_all()
            turns.leave(h, failed)

    try:
        start = time.perf_counter()
        with concurrent_futures.ThreadPoolExecutor(len(halves), "choicebc-eval") as pool:
            futures = [pool.submit(run, h) for h in range(len(halves))]
        errors = [f.exception() for f in futures]
        for error in errors:  # the first real failure, not the other worker's abort
            if error is not None and not isinstance(error, _Aborted):
                raise error
        if not log.complete:
            raise RuntimeError("evaluation stalled: no slot is running an episode")
        return time.perf_counter() - start
    finally:
        for half in halves:
            half.close()


def _act_active(act: PolicyFn, obs: np.ndarray, env: Any) -> np.ndarray:
    """Actions for every slot; the policy sees only the active ones (zeros elsewhere)."""
    active = env.active
    if active.all():
        return act(obs)
    if not active.any():
        return np.zeros((env.num_envs, env.act_dim), np.float32)
    some = np.asarray(act(obs[active]))
    # zeros of the policy's own shape and dtype: (N,) int64 ids on a discrete task
    actions = np.zeros((env.num_envs, *some.shape[1:]), some.dtype)
    actions[active] = some
    return actions
