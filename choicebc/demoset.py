"""``DemoSet``: demonstrations with ground-truth corruption labels, in one plain HDF5 file.

The file is robomimic-like, so anyone can read it with ``h5py`` alone::

    /                       attrs: format="choicebc.DemoSet", format_version=1
    /data                   attrs: total (transitions), episodes, env_id, env_version, expert,
                                   adversary, adversary_kind, ratio, mix, seed, obs_dim, act_dim,
                                   action_low, action_high, has_labels, *_version (libraries), ...
    /data/demo_<i>          attrs: num_samples, return, seed, adversary_share, episode_index,
                                   group (str or int, when known: the operator who drove it),
                                   demo_quality (float, after `choicebc demos score`)
        obs               (T, obs_dim) float32   observation the action was chosen from
        actions           (T, act_dim) float32   recorded action: the behaviour-cloning target
        executed_actions  (T, act_dim) float32   action the simulator ran (== actions unless
                                                 mix="label")
        rewards           (T,)         float64
        terminated        (T,)         bool
        truncated         (T,)         bool
        is_corrupt        (T,)         bool      ground truth: the adversary produced `actions`
        final_obs         (obs_dim,)   float32   observation reached by the last step
        quality           (T,)         float32   per-step quality (after `choicebc demos score`)
    /mask/<name>            (n,) bytes: the names of the demos in subset <name> (b"demo_3", ...)

``mask/<name>`` are robomimic's filter keys, in robomimic's format (``np.array(names,
dtype="S")``): :func:`write_mask` adds one, ``DemoSet.load(path, mask=name)`` reads that subset,
and robomimic's ``SequenceDataset(..., filter_by_attribute=name)`` reads the same file.
:meth:`DemoSet.from_robomimic` imports a robomimic dataset (``data/demo_<i>/obs/<key>``).

A task with a discrete action (``Discrete(n)``, e.g. ``choicebc/PointReachDiscrete-v0``) records
its action ids as ``actions``/``executed_actions`` of shape ``(T, 1)`` and dtype ``int64``, and
``/data`` has the attribute ``n_actions = n``.

In memory a :class:`DemoSet` keeps flat arrays (all episodes concatenated, in episode order)
plus per-episode arrays, so training code reads ``demos.observations`` / ``demos.actions``
directly. Files are written to a temporary name (``.<name>.<pid>.<8 hex>.tmp`` beside the target)
and renamed: an interrupted write never leaves a half-written file under the final name, and an
existing file is only replaced with ``overwrite=True``. The temporary file of a killed writer
stays; the next write to the same target deletes it
(see :func:`choicebc.atomic.remove_stale_temp_files`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.atomic import commit_file, temp_beside, temp_name

FORMAT = "choicebc.DemoSet"
FORMAT_VERSION = 1

# per-step datasets of a demo group: name -> (dtype, per-step shape: "obs", "act" or scalar)
_STEP_FIELDS: dict[str, tuple[type, str]] = {
    "obs": (np.float32, "obs"),
    "actions": (np.float32, "act"),
    "executed_actions": (np.float32, "act"),
    "rewards": (np.float64, ""),
    "terminated": (np.bool_, ""),
    "truncated": (np.bool_, ""),
    "is_corrupt": (np.bool_, ""),
}


class DemoFileError(ValueError):
    """A file that is not a readable DemoSet (not HDF5, truncated, or missing required parts)."""


class DemoFormatError(ValueError):
    """Arrays that do not form a consistent DemoSet (mismatched lengths, wrong dims, NaN...)."""


@dataclasses.dataclass(eq=False)
class DemoSet:
    """Demonstration episodes: flat per-step arrays plus per-episode arrays and file attributes.

    Per step (``M`` transitions in total, episodes concatenated in order):

    Attributes:
        observations: ``(M, obs_dim) float32`` observation each action was chosen from.
        actions: ``(M, act_dim) float32`` recorded action (the behaviour-cloning target);
            with a discrete action (``attrs["n_actions"]`` set): ``(M, 1) int64`` ids.
        executed_actions: ``(M, act_dim) float32`` action the simulator ran; differs from
            ``actions`` only under ``mix="label"`` (annotation noise).
        rewards: ``(M,) float64``.
        terminated: ``(M,) bool`` the task ended the episode at this step.
        truncated: ``(M,) bool`` the episode was cut at this step (time limit, sim instability,
            or the collection's transition budget).
        is_corrupt: ``(M,) bool`` ground truth: the adversary produced the recorded action.
        episode_lengths: ``(E,) int64``, each >= 1, summing to ``M``.
        episode_returns: ``(E,) float64`` undiscounted return of each episode.
        episode_seeds: ``(E,) int64`` the seed each episode was reset with (-1: unknown).
        final_observations: ``(E, obs_dim) float32`` observation reached by each episode's
            last step (what Minari stores as the last of ``T + 1`` observations).
        attrs: file attributes: ``env_id`` (required), and as written by :func:`choicebc.collect`
            ``env_version``, ``expert``, ``adversary``, ``adversary_kind``, ``ratio``, ``mix``,
            ``seed``, ``action_low``/``action_high`` (lists), ``has_labels`` and library
            versions. Values are str, bool, int, float or lists of numbers.
        groups: ``(E,)`` the operator (demonstrator) id of each episode, ``str`` (numpy ``U``)
            or ``int64``; ``None`` when unknown. Stored as the ``group`` attribute of each
            ``data/demo_<i>``.
        demo_quality: ``(E,) float64`` P(the target demonstrator drove episode e), written by
            ``choicebc demos score`` (``policy.demo_quality``); ``None`` when not scored.
            Stored as the ``demo_quality`` attribute of each ``data/demo_<i>``.
    """

    observations: np.ndarray
    actions: np.ndarray
    executed_actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    is_corrupt: np.ndarray
    episode_lengths: np.ndarray
    episode_returns: np.ndarray
    episode_seeds: np.ndarray
    final_observations: np.ndarray
    attrs: dict[str, Any]
    groups: np.ndarray | None = None
    demo_quality: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.attrs = dict(self.attrs)
        self.observations = np.ascontiguousarray(self.observations, dtype=np.float32)
        self.actions = self._action_array("actions", self.actions)
        self.executed_actions = self._action_array("executed_actions", self.executed_actions)
        self.rewards = np.ascontiguousarray(self.rewards, dtype=np.float64)
        self.terminated = np.ascontiguousarray(self.terminated, dtype=bool)
        self.truncated = np.ascontiguousarray(self.truncated, dtype=bool)
        self.is_corrupt = np.ascontiguousarray(self.is_corrupt, dtype=bool)
        self.episode_lengths = np.ascontiguousarray(self.episode_lengths, dtype=np.int64)
        self.episode_returns = np.ascontiguousarray(self.episode_returns, dtype=np.float64)
        self.episode_seeds = np.ascontiguousarray(self.episode_seeds, dtype=np.int64)
        self.final_observations = np.ascontiguousarray(self.final_observations, dtype=np.float32)
        if self.groups is not None:
            self.groups = _group_array(self.groups)
        if self.demo_quality is not None:
            self.demo_quality = np.ascontiguousarray(self.demo_quality, dtype=np.float64)
        self._validate()

    def _action_array(self, name: str, values: Any) -> np.ndarray:
        """float32 actions, or int64 ids when ``attrs["n_actions"]`` marks a discrete action."""
        values = np.asarray(values)
        if self.n_actions is None:
            return np.ascontiguousarray(values, dtype=np.float32)
        if not np.issubdtype(values.dtype, np.integer):
            raise DemoFormatError(
                f"{name} of a discrete-action DemoSet (n_actions={self.n_actions}) must be "
                f"integer action ids, got dtype {values.dtype}"
            )
        return np.ascontiguousarray(values, dtype=np.int64)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_episodes(
        cls,
        episodes: Iterable[Mapping[str, Any]],
        attrs: Mapping[str, Any],
        groups: Iterable[Any] | None = None,
        demo_quality: Iterable[float] | None = None,
    ) -> DemoSet:
        """Build a DemoSet from per-episode arrays (e.g. your own demonstrations).

        Args:
            episodes: one mapping per episode with ``obs (T, obs_dim)``, ``actions (T, act_dim)``,
                ``rewards (T,)``, ``terminated (T,)``, ``truncated (T,)``, ``final_obs
                (obs_dim,)`` and optionally ``is_corrupt (T,)`` (default all False),
                ``executed_actions`` (default ``actions``), ``seed`` (default -1) and ``return``
                (default: the rewards summed in step order).
            attrs: file attributes; must contain ``env_id``.
            groups: optional operator id (str or int) of each episode, in episode order.
            demo_quality: optional ``(E,)`` per-episode quality scores.

        Raises:
            DemoFormatError: inconsistent shapes, an empty episode, no ``env_id``, or
                ``groups`` / ``demo_quality`` not one value per episode.
        """
        parts: dict[str, list] = {name: [] for name in _STEP_FIELDS}
        lengths, returns, seeds, finals = [], [], [], []
        for i, ep in enumerate(episodes):
            missing = {"obs", "actions", "rewards", "terminated", "truncated", "final_obs"} - set(
                ep
            )
            if missing:
                raise DemoFormatError(f"episode {i} lacks {sorted(missing)}")
            rewards = np.asarray(ep["rewards"], dtype=np.float64).reshape(-1)
            t = rewards.shape[0]
            if t == 0:
                raise DemoFormatError(f"episode {i} is empty: every episode needs >= 1 step")
            parts["obs"].append(np.asarray(ep["obs"], dtype=np.float32))
            # dtype kept: float32 actions, or int64 ids of a discrete action (see __post_init__)
            parts["actions"].append(np.asarray(ep["actions"]))
            parts["executed_actions"].append(np.asarray(ep.get("executed_actions", ep["actions"])))
            parts["rewards"].append(rewards)
            parts["terminated"].append(np.asarray(ep["terminated"], dtype=bool))
            parts["truncated"].append(np.asarray(ep["truncated"], dtype=bool))
            parts["is_corrupt"].append(np.asarray(ep.get("is_corrupt", np.zeros(t, bool)), bool))
            lengths.append(t)
            # default: summed in step order, as the simulator accumulates an episode's return
            ret = ep.get("return")
            returns.append(float(np.cumsum(rewards)[-1]) if ret is None else float(ret))
            seeds.append(int(ep.get("seed", -1)))
            finals.append(np.asarray(ep["final_obs"], dtype=np.float32))
        if not lengths:
            raise DemoFormatError("a DemoSet needs at least one episode")
        flat = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        return cls(
            observations=flat["obs"],
            actions=flat["actions"],
            executed_actions=flat["executed_actions"],
            rewards=flat["rewards"],
            terminated=flat["terminated"],
            truncated=flat["truncated"],
            is_corrupt=flat["is_corrupt"],
            episode_lengths=np.asarray(lengths),
            episode_returns=np.asarray(returns),
            episode_seeds=np.asarray(seeds),
            final_observations=np.stack(finals),
            attrs=dict(attrs),
            groups=None if groups is None else list(groups),
            demo_quality=None if demo_quality is None else list(demo_quality),
        )

    def _validate(self) -> None:
        if "env_id" not in self.attrs:
            raise DemoFormatError("attrs must contain 'env_id' (the task the demos come from)")
        for key, value in self.attrs.items():
            if not _is_attr_value(value):
                raise DemoFormatError(
                    f"attribute {key!r} must be str, bool, int, float or a list of numbers, "
                    f"got {type(value).__name__}"
                )
        lengths = self.episode_lengths
        if lengths.ndim != 1 or lengths.size == 0 or (lengths < 1).any():
            raise DemoFormatError("episode_lengths must be a non-empty (E,) array of values >= 1")
        e, m = lengths.shape[0], int(lengths.sum())
        if self.observations.ndim != 2 or self.observations.shape[0] != m:
            raise DemoFormatError(
                f"observations must be (M, obs_dim) with M = sum(episode_lengths) = {m}, "
                f"got {self.observations.shape}"
            )
        if self.actions.ndim != 2 or self.actions.shape[0] != m:
            raise DemoFormatError(f"actions must be (M={m}, act_dim), got {self.actions.shape}")
        if self.n_actions is not None:
            if self.act_dim != 1:
                raise DemoFormatError(
                    f"a discrete-action DemoSet has one id per step: actions must be (M, 1), "
                    f"got {self.actions.shape}"
                )
            for name in ("actions", "executed_actions"):
                ids = getattr(self, name)
                if ids.size and (ids.min() < 0 or ids.max() >= self.n_actions):
                    raise DemoFormatError(
                        f"{name} holds ids outside [0, {self.n_actions}): "
                        f"{int(ids.min())}..{int(ids.max())}"
                    )
        if self.executed_actions.shape != self.actions.shape:
            raise DemoFormatError(
                f"executed_actions {self.executed_actions.shape} must match actions "
                f"{self.actions.shape}"
            )
        for name in ("rewards", "terminated", "truncated", "is_corrupt"):
            if getattr(self, name).shape != (m,):
                raise DemoFormatError(f"{name} must be ({m},), got {getattr(self, name).shape}")
        for name in ("episode_returns", "episode_seeds"):
            if getattr(self, name).shape != (e,):
                raise DemoFormatError(f"{name} must be ({e},), got {getattr(self, name).shape}")
        if self.final_observations.shape != (e, self.obs_dim):
            raise DemoFormatError(
                f"final_observations must be ({e}, {self.obs_dim}), "
                f"got {self.final_observations.shape}"
            )
        if self.groups is not None and self.groups.shape != (e,):
            raise DemoFormatError(
                f"groups must hold one operator id per episode: ({e},), got {self.groups.shape}"
            )
        if self.demo_quality is not None:
            if self.demo_quality.shape != (e,):
                raise DemoFormatError(
                    f"demo_quality must hold one score per episode: ({e},), "
                    f"got {self.demo_quality.shape}"
                )
            if not np.isfinite(self.demo_quality).all():
                raise DemoFormatError("demo_quality holds NaN or infinite scores")

    # ------------------------------------------------------------------ views
    @property
    def env_id(self) -> str:
        return str(self.attrs["env_id"])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def n_actions(self) -> int | None:
        """Number of actions of a discrete-action DemoSet (``attrs["n_actions"]``), else None."""
        n = self.attrs.get("n_actions")
        if n is None:
            return None
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) < 2:
            raise DemoFormatError(f"attribute n_actions must be an integer >= 2, got {n!r}")
        return int(n)

    @property
    def num_episodes(self) -> int:
        return int(self.episode_lengths.shape[0])

    @property
    def num_transitions(self) -> int:
        return int(self.observations.shape[0])

    def __len__(self) -> int:
        """Number of transitions ``M``."""
        return self.num_transitions

    @property
    def has_labels(self) -> bool:
        """Whether ``is_corrupt`` is ground truth (False for imported data without labels)."""
        return bool(self.attrs.get("has_labels", True))

    @property
    def action_low(self) -> np.ndarray | None:
        """``(act_dim,) float32`` lower action bound, if recorded."""
        low = self.attrs.get("action_low")
        return None if low is None else np.asarray(low, dtype=np.float32)

    @property
    def action_high(self) -> np.ndarray | None:
        """``(act_dim,) float32`` upper action bound, if recorded."""
        high = self.attrs.get("action_high")
        return None if high is None else np.asarray(high, dtype=np.float32)

    @property
    def episode_starts(self) -> np.ndarray:
        """``(E,) int64`` index of each episode's first transition in the flat arrays."""
        return np.cumsum(self.episode_lengths) - self.episode_lengths

    @property
    def episode_ids(self) -> np.ndarray:
        """``(M,) int64`` the episode (0 .. E-1) each transition belongs to."""
        return np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.episode_lengths)

    @property
    def timesteps(self) -> np.ndarray:
        """``(M,) int64`` step index of each transition within its episode."""
        starts = np.repeat(self.episode_starts, self.episode_lengths)
        return np.arange(self.num_transitions) - starts

    @property
    def next_observations(self) -> np.ndarray:
        """``(M, obs_dim) float32`` observation after each step (``final_observations`` at ends)."""
        nxt = np.empty_like(self.observations)
        nxt[:-1] = self.observations[1:]
        ends = np.cumsum(self.episode_lengths) - 1
        nxt[ends] = self.final_observations
        return nxt

    @property
    def adversary_share(self) -> np.ndarray:
        """``(E,) float64`` fraction of each episode's recorded actions that are corrupt."""
        counts = np.add.reduceat(self.is_corrupt.astype(np.int64), self.episode_starts)
        return counts / self.episode_lengths

    def episode(self, i: int) -> dict[str, Any]:
        """Episode ``i``'s arrays, keyed as in the file (``obs``, ``actions``, ..., ``seed``)."""
        if not -self.num_episodes <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: this DemoSet has {self.num_episodes}")
        i %= self.num_episodes
        start = int(self.episode_starts[i])
        rows = slice(start, start + int(self.episode_lengths[i]))
        return {
            "obs": self.observations[rows],
            "actions": self.actions[rows],
            "executed_actions": self.executed_actions[rows],
            "rewards": self.rewards[rows],
            "terminated": self.terminated[rows],
            "truncated": self.truncated[rows],
            "is_corrupt": self.is_corrupt[rows],
            "final_obs": self.final_observations[i],
            "return": float(self.episode_returns[i]),
            "seed": int(self.episode_seeds[i]),
        }

    def episodes(self) -> Iterable[dict[str, Any]]:
        """Every episode, in order (see :meth:`episode`)."""
        return (self.episode(i) for i in range(self.num_episodes))

    def filter(self, keep: np.ndarray) -> DemoSet:
        """A new DemoSet with the transitions where ``keep (M,) bool`` is True, in order.

        Each maximal run of kept, consecutive steps of one episode becomes an episode, so every
        kept transition keeps its true next observation (``final_observations`` of a run is the
        observation after its last step). A run that stops before its episode's end is marked
        ``truncated`` at its last step (the episode was cut there); ``terminated`` stays where
        the task ended it. A run's return is its rewards summed (an episode kept whole keeps its
        recorded return); its seed is the episode's if the run starts at the episode's first
        step, else -1 (unknown: it does not start from a reset). A run keeps its episode's
        ``groups`` and ``demo_quality`` entries: the same demonstrator drove it.

        Raises:
            DemoFormatError: ``keep`` has the wrong shape, or keeps nothing.
        """
        keep = np.asarray(keep)
        if keep.shape != (self.num_transitions,) or keep.dtype != bool:
            raise DemoFormatError(
                f"keep must be a ({self.num_transitions},) bool mask, got {keep.dtype} {keep.shape}"
            )
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            raise DemoFormatError("the mask keeps no transition: nothing would be left")
        ends = np.cumsum(self.episode_lengths) - 1
        starts = self.episode_starts
        episode = self.episode_ids[rows]
        # a run starts at a kept row whose predecessor is dropped or in another episode
        new_run = np.ones(rows.size, bool)
        new_run[1:] = (np.diff(rows) != 1) | (np.diff(episode) != 0)
        run_first = np.flatnonzero(new_run)
        run_last = np.append(run_first[1:] - 1, rows.size - 1)
        first_row, last_row = rows[run_first], rows[run_last]
        run_episode = episode[run_first]
        at_end = last_row == ends[run_episode]
        whole = at_end & (first_row == starts[run_episode])
        truncated = self.truncated[rows].copy()
        truncated[run_last] |= ~at_end
        final = np.where(
            at_end[:, None],
            self.final_observations[run_episode],
            self.observations[np.minimum(last_row + 1, self.num_transitions - 1)],
        )
        returns = np.add.reduceat(self.rewards[rows], run_first)
        returns[whole] = self.episode_returns[run_episode[whole]]
        seeds = np.where(first_row == starts[run_episode], self.episode_seeds[run_episode], -1)
        return DemoSet(
            observations=self.observations[rows],
            actions=self.actions[rows],
            executed_actions=self.executed_actions[rows],
            rewards=self.rewards[rows],
            terminated=self.terminated[rows],
            truncated=truncated,
            is_corrupt=self.is_corrupt[rows],
            episode_lengths=run_last - run_first + 1,
            episode_returns=returns,
            episode_seeds=seeds,
            final_observations=final,
            attrs=dict(self.attrs),
            groups=None if self.groups is None else self.groups[run_episode],
            demo_quality=None if self.demo_quality is None else self.demo_quality[run_episode],
        )

    def filter_episodes(self, keep: np.ndarray) -> DemoSet:
        """A new DemoSet with the whole episodes where ``keep (E,) bool`` is True, unchanged.

        Raises:
            DemoFormatError: ``keep`` has the wrong shape, or keeps nothing.
        """
        keep = np.asarray(keep)
        if keep.shape != (self.num_episodes,) or keep.dtype != bool:
            raise DemoFormatError(
                f"keep must be a ({self.num_episodes},) bool mask, got {keep.dtype} {keep.shape}"
            )
        return self.filter(np.repeat(keep, self.episode_lengths))

    def equals(self, other: DemoSet) -> bool:
        """Exact equality: every array (values and dtype, ``None`` only equal to ``None``) and
        every attribute."""
        if not isinstance(other, DemoSet) or _attrs_key(self.attrs) != _attrs_key(other.attrs):
            return False
        for f in dataclasses.fields(self):
            if f.name == "attrs":
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a is None or b is None:
                if a is not b:
                    return False
                continue
            if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                return False
        return True

    def non_finite_steps(self) -> dict[str, int]:
        """How many steps hold NaN or inf, for each of ``observations``, ``actions`` and
        ``rewards`` that has any (empty: the data are finite)."""
        counts = {
            "observations": int((~np.isfinite(self.observations)).any(axis=1).sum()),
            "actions": int((~np.isfinite(self.actions)).any(axis=1).sum()),
            "rewards": int((~np.isfinite(self.rewards)).sum()),
        }
        return {name: n for name, n in counts.items() if n}

    def summary(self) -> DemoSummary:
        """Episodes, transitions, corrupt share and return statistics (``print`` it)."""
        r = self.episode_returns
        return DemoSummary(
            env_id=self.env_id,
            episodes=self.num_episodes,
            transitions=self.num_transitions,
            corrupt_share=float(self.is_corrupt.mean()) if self.has_labels else None,
            mean_return=float(r.mean()),
            std_return=float(r.std()),
            min_return=float(r.min()),
            max_return=float(r.max()),
            mean_length=float(self.episode_lengths.mean()),
            expert=self.attrs.get("expert"),
            adversary=self.attrs.get("adversary"),
            ratio=self.attrs.get("ratio"),
            mix=self.attrs.get("mix"),
        )

    def __repr__(self) -> str:
        return (
            f"DemoSet({self.env_id!r}, episodes={self.num_episodes}, "
            f"transitions={self.num_transitions})"
        )

    # ------------------------------------------------------------------ files
    def save(
        self, path: str | os.PathLike, overwrite: bool = False, compression: str | None = None
    ) -> Path:
        """Write the DemoSet to ``path`` (HDF5) atomically; returns the path.

        The data goes to a hidden temporary file in the same folder, which is then renamed, so an
        interrupted save leaves no partial file under ``path`` (nor replaces an existing one).
        Temporary files that a killed save to ``path`` left behind are deleted first.

        Args:
            path: output file, conventionally ``*.h5``.
            overwrite: replace an existing file (otherwise refuse).
            compression: h5py filter for the per-step datasets, e.g. ``"gzip"`` (smaller, slower).

        Raises:
            FileNotFoundError: the folder does not exist.
            PermissionError: the folder is not writable.
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        import h5py

        path = Path(path)
        check_output_path(path, overwrite)
        tmp = temp_beside(path)
        try:
            with _open_for_writing(tmp) as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                data = f.create_group("data")
                for key, value in self._file_attrs(h5py).items():
                    data.attrs[key] = value
                starts = self.episode_starts
                for i in range(self.num_episodes):
                    _write_episode(data, i, self, int(starts[i]), compression)
            commit_file(tmp, path, overwrite)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def _file_attrs(self, h5py: Any) -> dict[str, Any]:
        attrs = dict(self.attrs)
        attrs.setdefault("has_labels", True)
        attrs["h5py_version"] = h5py.__version__
        attrs.update(
            total=self.num_transitions,
            episodes=self.num_episodes,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
        )
        return {k: _to_h5_attr(v) for k, v in sorted(attrs.items())}

    @classmethod
    def load(cls, path: str | os.PathLike, mask: str | None = None) -> DemoSet:
        """Read a file written by :meth:`save`.

        Args:
            path: the DemoSet file.
            mask: read only the demos named by the filter key ``mask/<mask>`` (robomimic's
                ``filter_by_attribute``), in the file's demo order.

        Raises:
            FileNotFoundError: no such file.
            DemoFileError: not an HDF5 file, a truncated one, or one without the DemoSet layout;
                an unknown ``mask``, or a mask naming a demo the file does not hold.
        """
        f = open_for_reading(path)
        try:
            with f:
                return cls._read(f, Path(path), mask)
        except DemoFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise DemoFileError(f"cannot read DemoSet {path}: {exc}") from exc

    @classmethod
    def _read(cls, f: Any, path: Path, mask: str | None = None) -> DemoSet:
        data = _data_group(f, path)
        names = sorted_demo_names(data)
        if mask is not None:
            names = _masked_names(f, path, mask, names)
        attrs = {k: _from_h5_attr(v) for k, v in data.attrs.items()}
        for derived in ("total", "episodes", "obs_dim", "act_dim", "h5py_version"):
            attrs.pop(derived, None)
        if "env_id" not in attrs:
            raise DemoFileError(f"{path}: data has no env_id attribute")
        episodes = []
        for name in names:
            g = data[name]
            missing = [k for k in (*_STEP_FIELDS, "final_obs") if k not in g]
            if missing:
                raise DemoFileError(f"{path}: data/{name} lacks {missing}")
            ep = {k: g[k][()] for k in (*_STEP_FIELDS, "final_obs")}
            ep["return"], ep["seed"] = float(g.attrs["return"]), int(g.attrs["seed"])
            episodes.append(ep)
        groups = _per_demo_attr(data, names, "group", path)
        quality = _per_demo_attr(data, names, "demo_quality", path)
        try:
            return cls.from_episodes(episodes, attrs, groups=groups, demo_quality=quality)
        except DemoFormatError as exc:
            raise DemoFileError(f"{path} is inconsistent: {exc}") from exc

    # ------------------------------------------------------------------ robomimic
    @classmethod
    def from_robomimic(
        cls,
        path: str | os.PathLike,
        obs_keys: Iterable[str],
        env_id: str | None = None,
        group_masks: Iterable[str] | None = None,
    ) -> DemoSet:
        """Import a robomimic dataset (HDF5, read with h5py only: nothing is unpickled).

        Reads ``data/demo_<i>`` in robomimic's order (by the integer ``i``: ``demo_10`` after
        ``demo_9``): ``obs/<key>`` ``(T, ...)``, ``actions (T, act_dim)``, ``rewards (T,)``,
        ``dones (T,)``. Each step's observation is every key in ``obs_keys`` flattened and
        concatenated **in the order of** ``obs_keys`` (``["a", "b"]`` with ``a (T, 3)`` and
        ``b (T, 2, 2)`` gives ``obs[:, :3] = a``, ``obs[:, 3:] = b.reshape(T, 4)``). Each
        episode's final observation is the last step of ``next_obs/<key>`` when the file has
        them, else its last observation. ``terminated`` is ``dones``; the last step is
        ``truncated`` when it is not done. There are no corruption labels (``is_corrupt`` all
        False, ``has_labels`` False); seeds are unknown (-1).

        Operator ids become :attr:`groups`, from the file's filter keys ``mask/<name>``: each
        demo's group is the name of the one mask (of ``group_masks``) that holds it. By default
        robomimic's multi-human masks ``worse``, ``okay``, ``better`` are used when present,
        disjoint and covering every demo (otherwise no groups, with a warning); they are
        proficiency tiers of two operators each: ``group_masks=["worse_operator_1",
        "worse_operator_2", "okay_operator_1", ...]`` gives the six operators. Masks are not
        copied into the DemoSet (``choicebc demos import`` copies them into its output file).

        Args:
            path: the robomimic ``.hdf5`` file.
            obs_keys: observation keys, e.g. ``["object", "robot0_eef_pos"]``.
            env_id: the task; default ``env_name`` of ``data.attrs["env_args"]``.
            group_masks: mask names that partition the demos into operators (see above).

        Raises:
            FileNotFoundError: no such file.
            DemoFileError: not a robomimic file; a missing obs key (the message lists those
                present), dataset or mask; no env name and no ``env_id``; ``group_masks``
                that do not name each demo exactly once.
        """
        obs_keys = [str(k) for k in obs_keys]
        if not obs_keys:
            raise DemoFileError("give at least one observation key (obs_keys / --obs-keys)")
        path = Path(path)
        f = open_for_reading(path, what="robomimic dataset")
        try:
            with f:
                return cls._read_robomimic(f, path, obs_keys, env_id, group_masks)
        except DemoFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise DemoFileError(f"cannot read robomimic dataset {path}: {exc}") from exc

    @classmethod
    def _read_robomimic(
        cls,
        f: Any,
        path: Path,
        obs_keys: list[str],
        env_id: str | None,
        group_masks: Iterable[str] | None,
    ) -> DemoSet:
        data = _data_group(f, path)
        names = sorted_demo_names(data)
        env_args = _robomimic_env_args(data)
        if env_id is None:
            env_id = env_args.get("env_name")
            if not env_id:
                raise DemoFileError(
                    f"{path} records no env name (data.attrs['env_args']['env_name']): pass "
                    "env_id='...' (CLI: --env-id ID)"
                )
        episodes = [_robomimic_episode(data[name], name, obs_keys, path) for name in names]
        groups = _robomimic_groups(masks_of(f), names, group_masks, path)
        attrs: dict[str, Any] = {
            "env_id": str(env_id),
            "source": f"robomimic:{path.name}",
            "obs_keys": json.dumps(obs_keys),
            "has_labels": False,
        }
        if env_args:
            attrs["robomimic_env_args"] = json.dumps(env_args, sort_keys=True)
        try:
            return cls.from_episodes(episodes, attrs, groups=groups)
        except DemoFormatError as exc:
            raise DemoFileError(f"{path} is inconsistent: {exc}") from exc

    # ------------------------------------------------------------------ Minari
    def to_minari(self, dataset_id: str, **metadata: Any):
        """Export as a local Minari dataset (``pip install choicebc[minari]``).

        Episodes keep Minari's conventions: ``T + 1`` observations (the last is
        ``final_observations[i]``), ``T`` actions (the recorded ones), rewards, terminations and
        truncations; infos hold ``is_corrupt`` and ``executed_actions`` with ``T + 1`` entries
        (entry 0 belongs to the reset, entry ``t + 1`` to step ``t``). The DemoSet attributes and
        per-episode returns, seeds, ``groups`` and ``demo_quality`` (when present) go into the
        dataset metadata under ``"choicebc"`` (JSON, see :meth:`_minari_payload`), so
        :meth:`from_minari` restores this DemoSet exactly.

        Args:
            dataset_id: Minari id, ``namespace/env/name-v0`` style (see Minari's docs); written
                under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``).
            **metadata: passed to ``minari.create_dataset_from_buffers`` (``author``,
                ``description``, ``code_permalink``, ...).

        Returns:
            The ``minari.MinariDataset``.

        Raises:
            ImportError: minari is not installed.
            FileExistsError: a local dataset with this id exists.
        """
        if self.n_actions is not None:
            raise DemoFormatError(
                "Minari export of discrete-action DemoSets is not supported: save to HDF5 "
                "(demos.save(path)); the file is readable with plain h5py"
            )
        minari, gym = _import_minari()
        from minari.data_collector.episode_buffer import EpisodeBuffer

        if dataset_id in minari.list_local_datasets():
            raise FileExistsError(
                f"a local Minari dataset {dataset_id!r} exists: delete it with "
                f"minari.delete_dataset({dataset_id!r}) or choose another id"
            )
        buffers = []
        for i, ep in enumerate(self.episodes()):
            t = ep["rewards"].shape[0]
            corrupt = np.zeros(t + 1, bool)
            corrupt[1:] = ep["is_corrupt"]
            executed = np.zeros((t + 1, self.act_dim), np.float32)
            executed[1:] = ep["executed_actions"]
            buffers.append(
                EpisodeBuffer(
                    id=i,
                    seed=ep["seed"] if ep["seed"] >= 0 else None,
                    observations=np.concatenate([ep["obs"], ep["final_obs"][None]]),
                    actions=ep["actions"],
                    rewards=ep["rewards"],
                    terminations=ep["terminated"],
                    truncations=ep["truncated"],
                    infos={"is_corrupt": corrupt, "executed_actions": executed},
                )
            )
        low = self.action_low if self.action_low is not None else -np.inf
        high = self.action_high if self.action_high is not None else np.inf
        spec = _gym_spec(gym, self.env_id)
        metadata.setdefault("algorithm_name", "choicebc.collect")
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=spec,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32),
            action_space=gym.spaces.Box(
                np.broadcast_to(low, (self.act_dim,)).astype(np.float32),
                np.broadcast_to(high, (self.act_dim,)).astype(np.float32),
                (self.act_dim,),
                np.float32,
            ),
            **metadata,
        )
        dataset.storage.update_metadata({"choicebc": json.dumps(self._minari_payload())})
        return dataset

    def _minari_payload(self) -> dict[str, Any]:
        """What Minari's episodes cannot hold: attributes and per-episode values, in episode
        order (``groups`` and ``demo_quality`` only when present)."""
        payload: dict[str, Any] = {
            "attrs": self.attrs,
            "episode_returns": self.episode_returns.tolist(),
            "episode_seeds": self.episode_seeds.tolist(),
        }
        if self.groups is not None:
            payload["groups"] = self.groups.tolist()
        if self.demo_quality is not None:
            payload["demo_quality"] = self.demo_quality.tolist()
        return payload

    @classmethod
    def from_minari(cls, dataset: Any, env_id: str | None = None) -> DemoSet:
        """Import a Minari dataset (a ``MinariDataset`` or a local dataset id).

        Datasets exported by :meth:`to_minari` come back exactly. Other datasets need Box
        observations and actions; their ``is_corrupt`` labels are unknown (all False,
        ``has_labels`` False) unless their infos carry ``is_corrupt``.

        Args:
            dataset: ``minari.MinariDataset`` or its id.
            env_id: task id when the dataset does not record its env.

        Raises:
            ImportError: minari is not installed.
            DemoFormatError: non-Box spaces, or no env id.
        """
        minari, _ = _import_minari()
        if isinstance(dataset, str):
            dataset = minari.load_dataset(dataset)
        meta = dataset.storage.metadata
        ours = json.loads(meta["choicebc"]) if "choicebc" in meta else None
        attrs: dict[str, Any] = dict(ours["attrs"]) if ours else {}
        if not ours:
            spec = dataset.spec.env_spec
            env = env_id or (spec.id if spec is not None else None)
            if env is None:
                raise DemoFormatError(
                    "the Minari dataset records no environment: pass env_id='...'"
                )
            attrs.update(env_id=env, source=f"minari:{dataset.spec.dataset_id}")
        episodes = []
        labelled = True
        for i, ep in enumerate(dataset.iterate_episodes()):
            if not isinstance(ep.observations, np.ndarray) or not isinstance(
                ep.actions, np.ndarray
            ):
                raise DemoFormatError(
                    "only Box observation and action spaces can become a DemoSet "
                    f"(episode {ep.id} has {type(ep.observations).__name__} observations)"
                )
            t = len(ep.rewards)
            infos = ep.infos or {}
            corrupt = _per_step_info(infos.get("is_corrupt"), t)
            executed = _per_step_info(infos.get("executed_actions"), t)
            labelled &= corrupt is not None
            record = {
                "obs": ep.observations[:-1].reshape(t, -1),
                "final_obs": ep.observations[-1].reshape(-1),
                "actions": ep.actions.reshape(t, -1),
                "rewards": ep.rewards,
                "terminated": ep.terminations,
                "truncated": ep.truncations,
                "is_corrupt": corrupt if corrupt is not None else np.zeros(t, bool),
                "executed_actions": executed if executed is not None else ep.actions.reshape(t, -1),
                "seed": ours["episode_seeds"][i] if ours else _minari_seed(dataset, ep.id),
            }
            if ours:
                record["return"] = ours["episode_returns"][i]
            episodes.append(record)
        if not ours:
            attrs["has_labels"] = bool(labelled)
            space = dataset.spec.action_space
            if hasattr(space, "low"):
                attrs["action_low"] = np.asarray(space.low, np.float32).reshape(-1).tolist()
                attrs["action_high"] = np.asarray(space.high, np.float32).reshape(-1).tolist()
        return cls.from_episodes(
            episodes,
            attrs,
            groups=ours.get("groups") if ours else None,
            demo_quality=ours.get("demo_quality") if ours else None,
        )


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    """What :meth:`DemoSet.summary` reports; ``str()`` gives a short readable block."""

    env_id: str
    episodes: int
    transitions: int
    corrupt_share: float | None
    mean_return: float
    std_return: float
    min_return: float
    max_return: float
    mean_length: float
    expert: str | None = None
    adversary: str | None = None
    ratio: float | None = None
    mix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        share = "unknown (no labels)" if self.corrupt_share is None else f"{self.corrupt_share:.1%}"
        lines = [
            f"{self.env_id}: {self.episodes:,} episodes, {self.transitions:,} transitions "
            f"(mean length {self.mean_length:.1f})",
            f"corrupt share: {share}",
            f"return: {self.mean_return:.1f} ± {self.std_return:.1f} "
            f"(min {self.min_return:.1f}, max {self.max_return:.1f})",
        ]
        if self.adversary is not None:
            ratio = "?" if self.ratio is None else f"{self.ratio:g}"
            lines.append(
                f"expert {self.expert}; adversary {self.adversary}; ratio {ratio}, mix {self.mix}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------- paths
def episode_means(values: np.ndarray, episode_lengths: np.ndarray) -> np.ndarray:
    """``(E,) float64`` mean of per-step ``values (M,)`` over each episode (episodes stored
    contiguously, in order, ``episode_lengths (E,)`` each >= 1)."""
    values = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(episode_lengths)
    if len(values) == 0:
        return np.zeros(len(lengths))
    return np.add.reduceat(values, np.cumsum(lengths) - lengths) / lengths


def check_output_path(
    path: str | os.PathLike, overwrite: bool = False, *, create_folder: bool = False
) -> Path:
    """Check that a file can be written to ``path`` before spending time on what goes in it
    (a DemoSet, an evaluation's JSON, a figure); every ``--out``-like option checks here.

    Args:
        path: the file to be written.
        overwrite: an existing file at ``path`` may be replaced.
        create_folder: the writer creates missing folders: a missing folder is fine when the
            nearest existing one above it is writable.

    Raises:
        FileNotFoundError: the folder does not exist (and ``create_folder`` is False).
        IsADirectoryError: ``path`` is a folder.
        NotADirectoryError: a file is in the way of the folder.
        PermissionError: the folder is not writable (probed by creating a temporary file).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    folder = path.parent
    while create_folder and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"folder {folder} does not exist: create it (mkdir -p {folder}) or choose another path"
        )
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give the name of a file inside it")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists: pass overwrite=True (CLI: --overwrite) to replace it, "
            "or choose another name"
        )
    probe = temp_name(folder / path.name, ".probe")
    try:
        probe.open("xb").close()
    except OSError as exc:
        raise PermissionError(
            f"cannot write {path}: cannot write to folder {folder} ({exc.strerror or exc}): "
            "choose a writable folder"
        ) from exc
    probe.unlink()
    return path


def open_for_reading(path: str | os.PathLike, what: str = "DemoSet"):
    """``h5py.File(path, "r")`` with the errors a user can cause made clear."""
    import h5py

    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        advice = (
            f"record one with `choicebc collect ENV_ID {path}` or check the path"
            if what == "DemoSet"
            else "check the path"
        )
        raise FileNotFoundError(f"no {what} file at {path}{hint}: {advice}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DemoFileError(
            f"{path} is not a readable HDF5 file ({exc}). A truncated or partially copied "
            "file reads like this: copy or collect it again"
        ) from exc


def _data_group(f: Any, path: Path) -> Any:
    if "data" not in f or not hasattr(f["data"], "keys"):
        raise DemoFileError(
            f"{path} is HDF5 but not a DemoSet: it has no 'data' group "
            "(expected data/demo_<i>/{obs, actions, ...})"
        )
    data = f["data"]
    if not sorted_demo_names(data):
        raise DemoFileError(f"{path} has no data/demo_<i> groups: it holds no episodes")
    return data


def sorted_demo_names(data: Any) -> list[str]:
    """The ``demo_<i>`` names of an open file's ``data`` group, sorted by ``i`` (robomimic's
    order, and the episode order of :meth:`DemoSet.load`)."""
    names = [k for k in data.keys() if re.fullmatch(r"demo_\d+", k)]
    return sorted(names, key=lambda k: int(k[5:]))


def _per_demo_attr(data: Any, names: list[str], key: str, path: Path) -> list[Any] | None:
    """Attribute ``key`` of each demo, or None when no demo has it."""
    present = [key in data[n].attrs for n in names]
    if not any(present):
        return None
    if not all(present):
        lacking = names[present.index(False)]
        raise DemoFileError(
            f"{path}: data/{lacking} has no {key!r} attribute while other demos have one: "
            "set it on every demo or on none"
        )
    return [_from_h5_attr(data[n].attrs[key]) for n in names]


def _group_array(values: Any) -> np.ndarray:
    """Operator ids as ``int64`` or ``str`` (numpy ``U``, narrowest width) arrays."""
    arr = np.asarray(values)
    if arr.dtype.kind in "SO":
        items = [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.ravel().tolist()]
        if all(isinstance(v, str) for v in items):
            arr = np.asarray(items, dtype=str).reshape(arr.shape)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            arr = np.asarray(items, dtype=np.int64).reshape(arr.shape)
    if arr.dtype.kind in "iu":
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.dtype.kind == "U":
        return np.asarray(arr.tolist(), dtype=str)
    raise DemoFormatError(
        f"groups must be operator ids (strings or integers), got dtype {arr.dtype}"
    )


# ---------------------------------------------------------------------- masks (filter keys)
_MASK_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_mask_name(name: Any) -> str:
    if not isinstance(name, str) or not _MASK_NAME.fullmatch(name) or set(name) == {"."}:
        raise ValueError(
            f"mask name {name!r}: use letters, digits, '_', '-' and '.' "
            "(e.g. clean, better_operator_1)"
        )
    return name


def masks_of(f: Any) -> dict[str, list[str]]:
    """Every ``mask/<name>`` dataset of an open file: name -> demo names, as robomimic reads
    them (``[elem.decode("utf-8") for elem in f["mask/<name>"][:]]``)."""
    group = f.get("mask")
    if group is None or not hasattr(group, "keys"):
        return {}
    masks = {}
    for name in group.keys():
        ds = group[name]
        if not hasattr(ds, "shape"):  # a sub-group, not a filter key
            continue
        values = np.asarray(ds[()]).reshape(-1).tolist()
        masks[name] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    return masks


def _short_list(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _masked_names(f: Any, path: Path, mask: str, names: list[str]) -> list[str]:
    """The demos of ``names`` that ``mask/<mask>`` holds, in ``names`` order."""
    masks = masks_of(f)
    if mask not in masks:
        have = ", ".join(sorted(masks)) if masks else "none"
        raise DemoFileError(
            f"{path} has no mask {mask!r} (its masks: {have}); write one with "
            f"`choicebc demos filter --demos {path} --episodes --min-quality Q "
            f"--write-mask {mask}`"
        )
    held = set(names)
    missing = [n for n in masks[mask] if n not in held]
    if missing:
        raise DemoFileError(
            f"mask/{mask} of {path} names {_short_list(missing)}, which data/ does not hold: "
            f"the mask does not match this file's demos (rewrite it with --write-mask {mask} "
            "--overwrite)"
        )
    wanted = set(masks[mask])
    chosen = [n for n in names if n in wanted]
    if not chosen:
        raise DemoFileError(f"mask/{mask} of {path} is empty: it names no demo")
    return chosen


def read_masks(path: str | os.PathLike) -> dict[str, list[str]]:
    """The filter keys of a DemoSet (or robomimic) file: ``{name: [demo names]}``.

    Raises:
        FileNotFoundError, DemoFileError: no such file, or not HDF5.
    """
    with open_for_reading(path) as f:
        return masks_of(f)


def put_mask(f: Any, name: str, names: list[str]) -> None:
    """Write ``mask/<name>`` exactly as robomimic's ``create_hdf5_filter_key`` does."""
    key = f"mask/{name}"
    if key in f:
        del f[key]
    f[key] = np.array(names, dtype="S")


def write_mask(
    path: str | os.PathLike, name: str, demo_names: Iterable[str], overwrite: bool = False
) -> Path:
    """Add the filter key ``mask/<name>`` (the names of a subset of demos) to a file in place.

    The format is robomimic's (``f["mask/<name>"] = np.array(names, dtype="S")``), so
    ``DemoSet.load(path, mask=name)``, ``choicebc demos filter --mask name`` and robomimic's
    ``filter_by_attribute=name`` all read the subset. The file is copied to a temporary file
    beside it, the mask added there, and the copy renamed over the original: an interrupted or
    failed write leaves the file unchanged.

    Args:
        path: a DemoSet or robomimic file (it must hold ``data/demo_<i>`` groups).
        name: the mask's name: letters, digits, ``_``, ``-``, ``.``.
        demo_names: the demos in the subset, e.g. ``["demo_0", "demo_3"]`` (duplicates dropped).
        overwrite: replace an existing mask of that name.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a bad mask name or no demo names.
        DemoFileError: not HDF5, no ``data/demo_<i>``, or a name the file does not hold.
        FileExistsError: the mask exists and ``overwrite`` is False.
    """
    import h5py

    path = Path(path)
    check_mask_name(name)
    names = list(dict.fromkeys(str(n) for n in demo_names))
    if not names:
        raise ValueError(f"mask {name!r} would name no demo: give at least one")
    with open_for_reading(path) as f:
        held = set(sorted_demo_names(_data_group(f, path)))
        missing = [n for n in names if n not in held]
        if missing:
            raise DemoFileError(f"{path} has no {_short_list(missing)}: a mask names its demos")
        if name in masks_of(f) and not overwrite:
            raise FileExistsError(
                f"{path} already has mask/{name}: pass overwrite=True (CLI: --overwrite) to "
                "replace it, or choose another name"
            )
    tmp = temp_beside(path)
    try:
        shutil.copyfile(path, tmp)
        shutil.copymode(path, tmp)
        with h5py.File(tmp, "r+") as f:
            put_mask(f, name, names)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------- robomimic
_ROBOMIMIC_OPERATOR_MASKS = ("worse", "okay", "better")


def _robomimic_env_args(data: Any) -> dict[str, Any]:
    raw = data.attrs.get("env_args")
    if raw is None:
        return {}
    try:
        parsed = json.loads(_from_h5_attr(raw))
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _flat_obs(group: Any, keys: list[str], t: int, where: str) -> np.ndarray:
    parts = []
    for key in keys:
        values = np.asarray(group[key][()])
        if values.ndim == 0 or values.shape[0] != t:
            raise DemoFileError(f"{where}/{key} has shape {values.shape}, expected {t} rows")
        parts.append(values.reshape(t, -1).astype(np.float32))
    return np.concatenate(parts, axis=1)


def _robomimic_episode(g: Any, name: str, obs_keys: list[str], path: Path) -> dict[str, Any]:
    where = f"{path}: data/{name}"
    for required in ("obs", "actions", "rewards", "dones"):
        if required not in g:
            raise DemoFileError(
                f"{where} has no {required!r}: a robomimic demo holds obs/<key>, actions, "
                "rewards and dones"
            )
    actions = np.asarray(g["actions"][()], dtype=np.float32)
    t = int(actions.shape[0]) if actions.ndim else 0
    num_samples = g.attrs.get("num_samples")
    if num_samples is not None and int(num_samples) != t:
        raise DemoFileError(f"{where}: num_samples={int(num_samples)} but {t} actions")
    obs_group = g["obs"]
    missing = [k for k in obs_keys if k not in obs_group]
    if missing:
        raise DemoFileError(
            f"{where}/obs has no {missing}: its observation keys are {sorted(obs_group.keys())}"
        )
    obs = _flat_obs(obs_group, obs_keys, t, f"{where}/obs")
    final = obs[-1] if t else np.zeros(obs.shape[1], np.float32)
    nxt = g.get("next_obs")
    if nxt is not None and all(k in nxt for k in obs_keys):
        final = _flat_obs(nxt, obs_keys, t, f"{where}/next_obs")[-1]
    dones = np.asarray(g["dones"][()]).reshape(-1).astype(bool)
    rewards = np.asarray(g["rewards"][()], dtype=np.float64).reshape(-1)
    if dones.shape != (t,) or rewards.shape != (t,):
        raise DemoFileError(
            f"{where}: rewards {rewards.shape} and dones {dones.shape} must have {t} entries"
        )
    truncated = np.zeros(t, bool)
    if t:
        truncated[-1] = not dones[-1]
    return {
        "obs": obs,
        "actions": actions.reshape(t, -1),
        "rewards": rewards,
        "terminated": dones,
        "truncated": truncated,
        "final_obs": final,
    }


def _robomimic_groups(
    masks: dict[str, list[str]], names: list[str], group_masks: Iterable[str] | None, path: Path
) -> list[str] | None:
    """Each demo's group: the one mask of ``group_masks`` that holds it (see from_robomimic)."""
    explicit = group_masks is not None
    chosen = list(group_masks) if explicit else [m for m in _ROBOMIMIC_OPERATOR_MASKS if m in masks]
    if not chosen:
        return None
    unknown = [m for m in chosen if m not in masks]
    if unknown:
        have = ", ".join(sorted(masks)) if masks else "none"
        raise DemoFileError(f"{path} has no mask {unknown} (its masks: {have})")
    owner: dict[str, str] = {}
    problem = None
    for mask in chosen:
        for demo in masks[mask]:
            if owner.setdefault(demo, mask) != mask and problem is None:
                problem = f"{demo} is in both mask/{owner[demo]} and mask/{mask}"
    unowned = [n for n in names if n not in owner]
    if problem is None and unowned:
        problem = f"{_short_list(unowned)} not in any of the masks {chosen}"
    if problem is None:
        return [owner[n] for n in names]
    if explicit:
        raise DemoFileError(f"{path}: group_masks must hold each demo exactly once: {problem}")
    warnings.warn(
        f"{path}: robomimic's operator masks {chosen} do not split the demos into groups "
        f"({problem}): importing without groups; choose masks with group_masks=[...] "
        "(CLI: --group-masks)",
        stacklevel=4,
    )
    return None


def _open_for_writing(tmp: Path):
    import h5py

    try:
        return h5py.File(tmp, "w")
    except OSError as exc:
        raise PermissionError(
            f"cannot create {tmp} ({exc}): choose a writable folder with free space"
        ) from exc


def _write_episode(data: Any, i: int, demos: DemoSet, start: int, compression: str | None) -> None:
    """Write episode ``i`` (flat rows ``start : start + T``) as ``data/demo_<i>``."""
    t = int(demos.episode_lengths[i])
    rows = slice(start, start + t)
    g = data.create_group(f"demo_{i}")
    arrays = {
        "obs": demos.observations[rows],
        "actions": demos.actions[rows],
        "executed_actions": demos.executed_actions[rows],
        "rewards": demos.rewards[rows],
        "terminated": demos.terminated[rows],
        "truncated": demos.truncated[rows],
        "is_corrupt": demos.is_corrupt[rows],
    }
    for name, array in arrays.items():
        g.create_dataset(name, data=array, compression=compression)
    g.create_dataset("final_obs", data=demos.final_observations[i])
    g.attrs["num_samples"] = t
    g.attrs["return"] = float(demos.episode_returns[i])
    g.attrs["seed"] = int(demos.episode_seeds[i])
    g.attrs["adversary_share"] = float(demos.is_corrupt[rows].mean())
    g.attrs["episode_index"] = i
    if demos.groups is not None:
        group = demos.groups[i]
        g.attrs["group"] = int(group) if demos.groups.dtype.kind == "i" else str(group)
    if demos.demo_quality is not None:
        g.attrs["demo_quality"] = float(demos.demo_quality[i])


# ---------------------------------------------------------------------- attributes
def _is_attr_value(value: Any) -> bool:
    if isinstance(value, str | bool | int | float | np.integer | np.floating | np.bool_):
        return True
    if isinstance(value, list | tuple):
        return all(
            isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            for v in value
        )
    return False


def _to_h5_attr(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return np.asarray(value, dtype=np.float64)
    return value


def _from_h5_attr(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _attrs_key(attrs: Mapping[str, Any]) -> str:
    return json.dumps({k: _from_h5_attr(_to_h5_attr(v)) for k, v in attrs.items()}, sort_keys=True)


# ---------------------------------------------------------------------- Minari helpers
def _import_minari():
    try:
        import gymnasium as gym
        import minari
    except ImportError as exc:
        raise ImportError(
            "Minari export/import needs the optional extra: pip install 'choicebc[minari]'"
        ) from exc
    return minari, gym


def _gym_spec(gym: Any, env_id: str):
    import choicebc.envs  # noqa: F401  (registers choicebc/PointReach-v0)

    try:
        return gym.spec(env_id)
    except gym.error.Error:
        return None


def _per_step_info(values: Any, t: int) -> np.ndarray | None:
    """Minari infos have ``T + 1`` entries (reset first); accept ``T`` too."""
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape[0] == t + 1:
        return values[1:]
    if values.shape[0] == t:
        return values
    return None


def _minari_seed(dataset: Any, episode_id: int) -> int:
    meta = next(iter(dataset.storage.get_episode_metadata([episode_id])), {})
    seed = meta.get("seed")
    return -1 if seed is None else int(seed)
