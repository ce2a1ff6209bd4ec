"""BCND: Behavioral Cloning from Noisy Demonstrations (Sasaki & Yamashina, ICLR 2021).

A peer baseline for robust BC without labels. It trains an ensemble of ``E`` stochastic
policies for ``R`` rounds; in each round after the first, a transition ``(s, a)`` is weighted by
how likely the previous round's ensemble finds it::

    round 1:    w_i = 1 / M                                      (plain BC on each member)
    round r>1:  pi_old(a|s) = (1/E) sum_e pi_e(a|s)              (previous round's ensemble)
                w_i = pi_old(a_i|s_i) / sum_j pi_old(a_j|s_j)    (the generalised BC objective
                                                                  E_D[pi_old(a|s) log pi(a|s)])

Noise that the ensemble explains poorly loses weight round after round; the expert's
behaviour, being the majority mode, keeps it. Choices this implementation makes (each a
documented option):

* members are :class:`~choicebc.policy.BCPolicy` s trained by :func:`~choicebc.train.train_bc`
  with ``sample_weights`` (weighted batch sampling). The default member head is a single
  tanh-mean Gaussian with softplus std (``gmm`` with one mode), close to the paper's Gaussian
  policy with tanh output layer;
* as in the paper, the transitions are split into ``E`` disjoint random shards, one per member
  (``split=False``: every member sees all data, differing by seed only);
* each round re-initialises the members (the weights carry the information between rounds);
  member ``e`` of round ``r`` (both from 0) is trained with seed ``seed + 1000 r + e``;
* the final policy acts with the ensemble mean of the members' deterministic actions (the
  paper's final policy is the mixture ``pi_old``; its mean is the natural deterministic action
  and what the reference implementations average at evaluation).

``data_quality`` is the ensemble likelihood relative to the likeliest of the members' own
actions in the same state, in ``[0, 1]`` (see :meth:`BCNDPolicy.data_quality`): the raw weight
``pi_old(a|s)`` is a density whose scale changes from state to state, which makes a single
``--min-quality`` threshold meaningless.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from choicebc.atomic import write_json_atomic
from choicebc.policy import BCPolicy, PolicyLoadError, config_size, read_config
from choicebc.train import TrainConfig, train_bc

FORMAT = "choicebc.BCNDPolicy"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
CHUNK = 65536
MAX_MEMBERS = 1000
"""Most members a saved ensemble's config may list."""


def bcnd_weights(log_likelihood: np.ndarray) -> np.ndarray:
    """Normalised BCND sample weights from ``(M,)`` log-likelihoods ``log pi_old(a_i|s_i)``.

    ``w_i = pi_old(a_i|s_i) / sum_j pi_old(a_j|s_j)``, computed as a softmax so that densities
    of any scale (a narrow Gaussian's density can exceed 1e10) neither overflow nor underflow.

    Returns:
        ``(M,) float64`` non-negative weights summing to 1.

    Raises:
        ValueError: empty input or NaN/+inf log-likelihoods.
    """
    log_likelihood = np.asarray(log_likelihood, dtype=np.float64).reshape(-1)
    if log_likelihood.size == 0:
        raise ValueError("no log-likelihoods given")
    if np.isnan(log_likelihood).any() or np.isposinf(log_likelihood).any():
        raise ValueError("log-likelihoods contain NaN or +inf")
    if np.isneginf(log_likelihood).all():
        return np.full(log_likelihood.shape, 1.0 / log_likelihood.size)
    w = np.exp(log_likelihood - log_likelihood.max())
    return w / w.sum()


class _Rows:
    """The flat arrays :func:`train_bc` reads, for a subset of a DemoSet's transitions."""

    def __init__(self, demos: Any, rows: np.ndarray) -> None:
        self.observations = np.asarray(demos.observations, dtype=np.float32)[rows]
        self.actions = np.asarray(demos.actions, dtype=np.float32)[rows]
        corrupt = getattr(demos, "is_corrupt", None)
        self.is_corrupt = None if corrupt is None else np.asarray(corrupt, dtype=bool)[rows]
        ids = getattr(demos, "episode_ids", None)
        self.episode_ids = np.arange(len(rows)) if ids is None else np.asarray(ids)[rows]
        self.action_low = getattr(demos, "action_low", None)
        self.action_high = getattr(demos, "action_high", None)
        self.env_id = getattr(demos, "env_id", None)


class BCNDPolicy(torch.nn.Module):
    """The BCND ensemble: ``E`` :class:`BCPolicy` members acting with their mean action.

    Usable wherever a ``BCPolicy`` is: ``act``, SB3 ``predict``, ``cb.evaluate`` (it is a
    ``torch.nn.Module`` whose forward maps raw observations to actions), ``save``/``load``.

    Args:
        members: the trained member policies (same obs/action dims).
        env_id: task the ensemble was trained for.
        history: per-round diagnostics written by :func:`train_bcnd` (kept in the JSON).
        settings: the training settings (kept in the JSON for provenance).
    """

    def __init__(
        self,
        members: list[BCPolicy],
        env_id: str | None = None,
        history: list[dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("a BCNDPolicy needs at least one member policy")
        dims = {(m.obs_dim, m.act_dim) for m in members}
        if len(dims) != 1:
            raise ValueError(f"members disagree on (obs_dim, act_dim): {sorted(dims)}")
        self.members = torch.nn.ModuleList(members)
        self.obs_dim, self.act_dim = members[0].obs_dim, members[0].act_dim
        self.env_id = env_id if env_id is not None else members[0].env_id
        self.history = list(history or [])
        self.settings = dict(settings or {})

    @property
    def ensemble(self) -> int:
        return len(self.members)

    # ----------------------------------------------------------------- acting
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N, act_dim)`` ensemble-mean action for raw observations ``obs (N, obs_dim)``."""
        return torch.stack([m(obs) for m in self.members]).mean(0)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return self.members[0]._obs_tensor(obs)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """``(N, act_dim) float32`` ensemble-mean actions for ``obs (N, obs_dim)``."""
        was_training = self.training
        self.eval()
        try:
            return self(self._obs_tensor(obs)).numpy()
        finally:
            self.train(was_training)

    # stable-baselines3 ``BasePolicy.predict`` contract, exactly as BCPolicy: ``(actions, None)``
    # (the ensemble mean is deterministic; ``deterministic`` is accepted for compatibility)
    predict = BCPolicy.predict

    # ----------------------------------------------------------------- likelihoods
    def _arrays(self, demos: Any, observations: Any, actions: Any) -> tuple[np.ndarray, ...]:
        if demos is not None:
            observations, actions = demos.observations, demos.actions
        if observations is None or actions is None:
            raise ValueError("pass a DemoSet or both observations= and actions=")
        obs = np.asarray(observations, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"observations must be (M, {self.obs_dim}), got {obs.shape}")
        if actions.ndim != 2 or actions.shape != (len(obs), self.act_dim):
            raise ValueError(f"actions must be ({len(obs)}, {self.act_dim}), got {actions.shape}")
        return obs, actions

    @torch.no_grad()
    def _member_log_probs(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``(E, N)`` log pi_e(a|s) for every member."""
        return torch.stack([m.mixture(obs).log_prob(actions) for m in self.members])

    def log_likelihood(
        self, demos: Any = None, *, observations: Any = None, actions: Any = None
    ) -> np.ndarray:
        """``(M,) float64`` log pi_old(a|s) = log of the members' mean density of each (s, a).

        Args:
            demos: a ``DemoSet``, or ``None`` with ``observations (M, obs_dim)`` and
                ``actions (M, act_dim)``.
        """
        obs, actions = self._arrays(demos, observations, actions)
        was_training = self.training
        self.eval()
        out = []
        try:
            for start in range(0, len(obs), CHUNK):
                o = torch.from_numpy(obs[start : start + CHUNK])
                a = torch.from_numpy(actions[start : start + CHUNK])
                lp = self._member_log_probs(o, a).double()
                out.append((torch.logsumexp(lp, 0) - math.log(self.ensemble)).numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    def sample_weights(
        self, demos: Any = None, *, observations: Any = None, actions: Any = None
    ) -> np.ndarray:
        """``(M,)`` the next round's normalised BCND weights (sum 1), see :func:`bcnd_weights`."""
        return bcnd_weights(self.log_likelihood(demos, observations=observations, actions=actions))

    def data_quality(
        self, demos: Any = None, *, observations: Any = None, actions: Any = None
    ) -> np.ndarray:
        """``(M,)`` quality in ``[0, 1]``: pi_old(a|s) relative to the ensemble's own actions.

        ``q(s, a) = min(1, pi_old(a|s) / max_e pi_old(mu_e(s)|s))`` with ``mu_e(s)`` member
        ``e``'s action: 1 for an action the ensemble would take itself, ``exp(-d^2 / 2)`` for
        one ``d`` standard deviations away from a single Gaussian member. Dividing by a
        per-state reference removes the state-to-state scale of the density, so quality is
        comparable across states (``choicebc demos filter --min-quality``).
        """
        obs, actions = self._arrays(demos, observations, actions)
        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(obs), CHUNK):
                    o = torch.from_numpy(obs[start : start + CHUNK])
                    a = torch.from_numpy(actions[start : start + CHUNK])
                    log_e = math.log(self.ensemble)
                    ll = torch.logsumexp(self._member_log_probs(o, a).double(), 0) - log_e
                    refs = []
                    for member in self.members:
                        own = member(o)
                        lp = self._member_log_probs(o, own).double()
                        refs.append(torch.logsumexp(lp, 0) - log_e)
                    ref = torch.stack(refs).max(0).values
                    out.append(torch.exp((ll - ref).clamp_max(0.0)).numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    # ----------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "ensemble": self.ensemble,
            "members": [f"member_{e}" for e in range(self.ensemble)],
            "settings": self.settings,
            "history": self.history,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and one ``member_<e>/`` BCPolicy folder per member.

        Members are written first and the JSON last (each file atomically), so a folder with
        a ``config.json`` is complete.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for e, member in enumerate(self.members):
            member.save(folder / f"member_{e}")
        write_json_atomic(folder / CONFIG_FILE, self.config())
        return folder

    @staticmethod
    def is_bcnd_folder(folder: str | Path) -> bool:
        """Whether ``folder`` holds a saved BCNDPolicy (its JSON says so)."""
        try:
            return read_config(Path(folder) / CONFIG_FILE).get("format") == FORMAT
        except (OSError, PolicyLoadError):
            return False

    @classmethod
    def load(
        cls,
        folder: str | Path,
        env_id: str | None = None,
        obs_dim: int | None = None,
        act_dim: int | None = None,
    ) -> BCNDPolicy:
        """Read a folder written by :meth:`save` (safetensors weights: no code runs on load).

        Raises:
            PolicyLoadError: missing/corrupt files, or an env/dims mismatch.
        """
        folder = Path(folder)
        path = folder / CONFIG_FILE
        config = read_config(path)
        if config.get("format") != FORMAT:
            raise PolicyLoadError(f"{folder} does not hold a BCNDPolicy (format != {FORMAT!r})")
        for key, want in (("env_id", env_id), ("obs_dim", obs_dim), ("act_dim", act_dim)):
            if want is not None and config.get(key) != want:
                raise PolicyLoadError(
                    f"policy in {folder} was trained for {key}={config.get(key)!r}, "
                    f"not {want!r}: train one for this env with cb.train_bcnd"
                )
        dims = {k: config_size(config, k, path) for k in ("obs_dim", "act_dim")}
        names, history, settings = (config.get(k) for k in ("members", "history", "settings"))
        if not (
            isinstance(names, list)
            and 1 <= len(names) <= MAX_MEMBERS
            and all(_is_member_name(name) for name in names)
        ):
            raise PolicyLoadError(
                f"{path}: members must list 1 to {MAX_MEMBERS} names of folders inside "
                f"{folder}, got {str(names)[:80]}: the config is corrupt; save the policy again"
            )
        if not isinstance(history, list | None) or not isinstance(settings, dict | None):
            raise PolicyLoadError(f"{path}: history must be a list and settings an object")
        members = [BCPolicy.load(folder / name, **dims) for name in names]
        return cls(
            members,
            env_id=config.get("env_id"),
            history=history,
            settings=settings,
        ).eval()


def _is_member_name(name: Any) -> bool:
    """A folder name directly inside the ensemble's folder: no path, no ``..``."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def load_policy_folder(folder: str | Path, **checks: Any) -> BCPolicy | BCNDPolicy:
    """Load a saved :class:`BCPolicy` or :class:`BCNDPolicy`, whichever ``folder`` holds.

    Args:
        checks: ``env_id``, ``obs_dim``, ``act_dim`` the policy must match.

    Raises:
        PolicyLoadError: as the class's ``load``.
    """
    if BCNDPolicy.is_bcnd_folder(folder):
        return BCNDPolicy.load(folder, **checks)
    return BCPolicy.load(folder, **checks)


def _round_diagnostics(weights: np.ndarray, corrupt: np.ndarray | None, r: int) -> dict:
    """One ``history`` row for the normalised ``weights (M,)`` the next round trains on."""
    m = len(weights)
    row: dict[str, Any] = {
        "round": r,
        "max_weight_times_m": float(weights.max() * m),
        # Kish's effective sample size 1 / sum w^2, as a share of M: density weights can pile
        # onto a few transitions (states where the ensemble is narrow), starving the next round
        "effective_sample_share": float(1.0 / np.square(weights).sum() / m),
    }
    if corrupt is not None and corrupt.any():
        # the share of the training distribution that lands on corrupt steps (round 0: ratio)
        row["corrupt_weight_share"] = float(weights[corrupt].sum())
    return row


def train_bcnd(
    demos: Any,
    ensemble: int = 5,
    rounds: int = 3,
    steps: int = 10_000,
    seed: int = 0,
    progress: bool = True,
    *,
    head: str = "gmm",
    head_kwargs: dict[str, Any] | None = None,
    split: bool = True,
    config: TrainConfig | None = None,
    env_id: str | None = None,
    out: str | Path | None = None,
) -> BCNDPolicy:
    """Train BCND (Sasaki & Yamashina, ICLR 2021) on demonstrations.

    Cost: ``ensemble * rounds`` runs of :func:`train_bc` with ``steps`` optimizer steps each
    (defaults: 15 runs of 10k steps).

    Args:
        demos: a ``DemoSet`` (or an object with flat ``observations (M, d)``, ``actions
            (M, a)``, optional ``is_corrupt``, ``episode_ids``, ``action_low/high``).
        ensemble: E, number of member policies.
        rounds: R, number of rounds (1 = an ensemble of plain BC policies).
        steps: optimizer steps per member per round.
        seed: base seed (shards and every member's training derive from it).
        progress: show progress bars.
        head: member head; it must model a density (``gmm``, ``mdn``, ``choicenet``...).
        head_kwargs: member head hyper-parameters (default for ``gmm``: ``{"n_modes": 1}``,
            a single Gaussian like the paper's policy).
        split: give each member a disjoint random shard of the transitions (the paper).
        config: further :class:`TrainConfig` settings for the members (``head``, ``steps``
            and ``seed`` are overridden by the arguments above).
        env_id: task id stored with the policy (default: ``demos.env_id``).
        out: if given, the final ensemble is saved there.

    Returns:
        The final round's :class:`BCNDPolicy` (its ``history`` lists, per round, the largest
        weight times M, the effective sample size of the weights as a share of M, and the share
        of training weight on ground-truth corrupt steps when labels exist).

    Raises:
        ValueError: ``ensemble``/``rounds``/``steps`` < 1, too few transitions to split, or a
            head without a likelihood (``mse``, ``l1``, ``robust`` have unit variance and do
            not learn one).
    """
    for name, value in (("ensemble", ensemble), ("rounds", rounds), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if head in ("mse", "l1", "robust"):
        raise ValueError(
            f"BCND weights samples by the policy's likelihood; head {head!r} learns no "
            "variance. Use 'gmm' (default), 'mdn' or 'choicenet'"
        )
    if getattr(demos, "n_actions", None) is not None:
        raise ValueError(
            "train_bcnd models continuous actions; these demos have a discrete action "
            "(n_actions set): use cb.train_bc with a classification head"
        )
    if head_kwargs is None and head == "gmm":
        head_kwargs = {"n_modes": 1}
    obs = np.asarray(demos.observations, dtype=np.float32)
    actions = np.asarray(demos.actions, dtype=np.float32)
    m = len(obs)
    if split and m < 2 * ensemble:
        raise ValueError(
            f"{m} transitions cannot be split into {ensemble} shards; pass split=False"
        )
    corrupt = getattr(demos, "is_corrupt", None)
    corrupt = None if corrupt is None else np.asarray(corrupt, dtype=bool)
    rng = np.random.default_rng(seed)
    if split:
        shards = [np.sort(s) for s in np.array_split(rng.permutation(m), ensemble)]
    else:
        shards = [np.arange(m)] * ensemble
    base = config or TrainConfig()
    env_id = env_id or getattr(demos, "env_id", None)
    settings = {
        "ensemble": ensemble,
        "rounds": rounds,
        "steps": steps,
        "seed": seed,
        "head": head,
        "head_kwargs": head_kwargs,
        "split": split,
        # the members' effective settings (seed: member e of round r adds 1000 r + e)
        "train_config": {
            **asdict(base),
            "head": head,
            "steps": steps,
            "seed": seed,
            "hidden": list(base.hidden),
        },
    }

    weights = np.full(m, 1.0 / m)  # round 1: uniform (plain BC)
    history = [_round_diagnostics(weights, corrupt, 0)]
    policy: BCNDPolicy | None = None
    bar = tqdm(total=ensemble * rounds, desc="BCND", disable=not progress)
    for r in range(rounds):
        members = []
        for e, rows in enumerate(shards):
            bar.set_postfix(round=r + 1, member=e + 1)
            cfg = TrainConfig(
                **{**asdict(base), "head": head, "steps": steps, "seed": seed + 1000 * r + e}
            )
            members.append(
                train_bc(
                    _Rows(demos, rows),
                    config=cfg,
                    progress=progress,
                    env_id=env_id,
                    head_kwargs=head_kwargs,
                    sample_weights=weights[rows],
                )
            )
            bar.update(1)
        policy = BCNDPolicy(members, env_id=env_id, settings=settings)
        if r + 1 < rounds or corrupt is not None:
            weights = policy.sample_weights(observations=obs, actions=actions)
            history.append(_round_diagnostics(weights, corrupt, r + 1))
        policy.history = history
    bar.close()
    assert policy is not None  # rounds >= 1
    if out is not None:
        policy.save(out)
    return policy
