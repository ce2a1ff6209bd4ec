"""``train_bc``: behaviour cloning with any head, as one readable loop (CleanRL style).

Run folder layout (``out``)::

    policy/            final BCPolicy (config.json + model.safetensors)
    checkpoint/        last good checkpoint: policy + trainer_state.pt (optimizer, RNG, step)
    log.csv            step, loss, val_loss, val_clean_mse, lr, steps_per_s
                       (discrete actions: val_clean_mse is the clean steps' error rate)
    tb/                TensorBoard events (same scalars)
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from choicebc.atomic import atomic_path
from choicebc.checkpoint_folder import (
    MARKER,
    checkpoint_step,
    recover_checkpoint_folder,
    save_checkpoint_folder,
)
from choicebc.choice import (
    ChoiceSchedule,
    ChoiceTraining,
    choice_log_likelihoods,
    flagged_shares,
    pick_choice,
    unit_ids,
    validate_choice,
)
from choicebc.policy import BCPolicy, resolve_head_name
from choicebc.train_config import TrainConfig

__all__ = ["TrainConfig", "TrainingDivergedError", "train_bc"]

TRAINER_STATE = "trainer_state.pt"
VAL_MAX_TRANSITIONS = 10_000
"""Periodic validation scores at most this many held-out transitions (a fixed, seeded subset):
on 1 M demos the full 5 % hold-out cost ~15 % of the training time (``choicebc bench train``)."""
MIN_TRAIN_TRANSITIONS = 2
PROBE_MIN_STEPS = 500
"""fewest steps of the demonstration-level choice's warm-up (an undertrained warm-up's densities
are too broad to tell one choice per step from one per episode, or the drivers apart)"""
MEDIAN_STEPS = 500
"""L1 steps that start the choice's warm-up at the conditional median (:func:`_fit_median`)"""
LOG_FIELDS = ["step", "loss", "val_loss", "val_clean_mse", "lr", "steps_per_s"]


class TrainingDivergedError(RuntimeError):
    """The loss or gradients became NaN/inf; the last good checkpoint is kept."""


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Step schedule: full rate, then x0.1 from 50 % and x0.01 from 75 % of the steps."""
    if step >= 0.75 * cfg.steps:
        return cfg.lr * 0.01
    if step >= 0.5 * cfg.steps:
        return cfg.lr * 0.1
    return cfg.lr


def split_episodes(
    episode_ids: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and validation transitions, holding out whole episodes."""
    episodes = np.unique(episode_ids)
    n_val = int(round(val_fraction * len(episodes)))
    if len(episodes) > 1:
        n_val = min(max(n_val, 1 if val_fraction > 0 else 0), len(episodes) - 1)
    else:
        n_val = 0
    rng = np.random.default_rng(seed)
    val_eps = rng.choice(episodes, size=n_val, replace=False)
    is_val = np.isin(episode_ids, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def sample_rows(
    n: int, batch_size: int, generator: torch.Generator, cdf: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B,)`` rows drawn with replacement from ``n``: uniform, or weighted by ``cdf``.

    Args:
        cdf: ``(n,) float64`` cumulative sample weights ending at 1 (see :func:`weights_cdf`);
            a row is drawn with probability proportional to its weight.
    """
    if cdf is None:
        return torch.randint(n, (batch_size,), generator=generator)
    # inverse-CDF sampling: O(B log M) per batch, where torch.multinomial is O(M)
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    return torch.searchsorted(cdf, u, right=True).clamp_max(n - 1)


def sample_batch(
    obs: torch.Tensor,
    actions: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    cdf: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch (with replacement) from in-memory tensors: rows from :func:`sample_rows`."""
    idx = sample_rows(len(obs), batch_size, generator, cdf)
    return obs.index_select(0, idx), actions.index_select(0, idx)  # ~2x obs[idx]


def weights_cdf(sample_weights: np.ndarray) -> torch.Tensor:
    """``(M,) float64`` normalised cumulative weights for :func:`sample_batch`.

    Raises:
        ValueError: negative or non-finite weights, or all weights zero.
    """
    w = np.asarray(sample_weights, dtype=np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weights must be finite and >= 0")
    total = w.sum()
    if not total > 0:
        raise ValueError("sample_weights are all zero on the training rows: nothing to train on")
    cdf = np.cumsum(w / total)
    cdf[-1] = 1.0
    return torch.from_numpy(cdf)


def _demo_arrays(demos: Any) -> dict[str, np.ndarray]:
    obs = np.asarray(demos.observations, dtype=np.float32)
    n_actions = getattr(demos, "n_actions", None)
    if n_actions is not None:  # discrete: (M, 1) int64 ids, the classification heads' labels
        actions = np.asarray(demos.actions)
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"demos of a discrete action (n_actions={n_actions}) need integer action ids, "
                f"got dtype {actions.dtype}"
            )
        actions = actions.astype(np.int64)
    else:
        actions = np.asarray(demos.actions, dtype=np.float32)
    if obs.ndim != 2 or actions.ndim != 2 or len(obs) != len(actions):
        raise ValueError(
            f"demos need observations (M, d) and actions (M, a); got {obs.shape}, {actions.shape}"
        )
    if len(obs) == 0:
        raise ValueError("demos are empty: collect some with `choicebc collect`")
    if not (np.isfinite(obs).all() and np.isfinite(actions).all()):
        raise ValueError("demos contain NaN or inf observations/actions; clean them first")
    corrupt = getattr(demos, "is_corrupt", None)
    episode_ids = getattr(demos, "episode_ids", None)
    episode_ids = np.arange(len(obs)) if episode_ids is None else np.asarray(episode_ids)
    if episode_ids.shape != (len(obs),):
        raise ValueError(f"episode_ids must have one entry per transition ({len(obs)})")
    starts = np.flatnonzero(np.r_[True, episode_ids[1:] != episode_ids[:-1]])
    run_lengths = np.diff(np.r_[starts, len(obs)])
    return {
        "obs": obs,
        "actions": actions,
        "is_corrupt": None if corrupt is None else np.asarray(corrupt, dtype=bool),
        "episode_ids": episode_ids,
        # step index within the episode (episodes are stored contiguously, in order)
        "timesteps": np.arange(len(obs)) - np.repeat(starts, run_lengths),
    }


def _write_log_row(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log rows written after the checkpoint we resume from."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= last_step]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _save_checkpoint(folder: Path, policy: BCPolicy, state: dict[str, Any]) -> None:
    """Policy + trainer state, crash-safe: written beside, then swapped in
    (:mod:`choicebc.checkpoint_folder`), so a crash at any point keeps a complete copy."""

    def write(tmp: Path) -> None:
        policy.save(tmp)
        torch.save(state, tmp / TRAINER_STATE)

    save_checkpoint_folder(folder, int(state["step"]), write)


def _last_good(ckpt_dir: Path | None) -> str:
    """``"; last good checkpoint: <dir>"`` when a complete one exists, else ``""``."""
    if ckpt_dir is None or checkpoint_step(ckpt_dir) is None:
        return ""
    return f"; last good checkpoint: {ckpt_dir}"


def _recover_checkpoint(folder: Path) -> bool:
    """Before resuming: the newest complete checkpoint among ``folder`` and the leftovers of a
    crash while swapping it. A checkpoint of an older choicebc (no completeness marker, all
    its files present) is adopted as it is. Returns whether a checkpoint is there."""
    legacy = [folder / n for n in (TRAINER_STATE, "config.json", "model.safetensors")]
    if all(f.is_file() for f in legacy) and not (folder / MARKER).exists():
        step = int(torch.load(folder / TRAINER_STATE, weights_only=True)["step"])
        files = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
        (folder / MARKER).write_text(json.dumps({"step": step, "files": files}))
    return recover_checkpoint_folder(folder) is not None


def _schedule(cfg: TrainConfig) -> ChoiceSchedule:
    return ChoiceSchedule(cfg.choice_horizon, cfg.choice_warmup, cfg.choice_grow, cfg.choice_anchor)


def _fit_median(policy: BCPolicy, obs: np.ndarray, actions: np.ndarray, cfg: TrainConfig) -> None:
    """Fit the target's action ``mu_1`` to the conditional median of ``actions`` (L1, Adam,
    :data:`MEDIAN_STEPS` steps, seeded by ``cfg.seed``): the warm-up's starting point.

    Where two drivers share states, the median of each action dimension is the majority
    driver's action -- what the target is -- while the mean that eq. (7)'s L2 pull fits lies
    between them. From the mean, a target mixture far from both drivers' actions gets too
    little responsibility to move, and broad mixtures explain both: on Walker2d-v5 with 40 %
    flipped episodes, 6-D actions, every first step stayed flagged (docs/design-notes.md).
    """
    obs_t, act_t = torch.from_numpy(obs), torch.from_numpy(actions)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    policy.train()
    for _ in range(MEDIAN_STEPS):
        obs_b, act_b = sample_batch(obs_t, act_t, cfg.batch_size, generator)
        loss = (policy.head.mode(policy.mixture(obs_b)) - act_b).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _choose(
    cfg: TrainConfig,
    demos: Any,
    data: dict[str, np.ndarray],
    train_idx: np.ndarray,
    n_actions: int | None,
    policy: BCPolicy,
) -> tuple[str, dict[str, Any]]:
    """The choice this run trains with, and what decided it.

    ``episode``, ``group`` and ``auto`` (ChoiceNet on continuous actions) first train
    ``policy`` in place -- the warm-up -- as the per-step ChoiceNet on the first
    ``choice_horizon`` steps of every training episode, for ``choice_warmup`` of the steps
    (at least :data:`PROBE_MIN_STEPS`) with their own learning-rate and lambda1 schedules,
    where both drivers share states and the majority defines the target; mu_1 starts at
    those steps' conditional median (:func:`_fit_median`). ``auto`` then
    decides from the warm-up's measurements on those steps: the likelihood of one choice per
    step against one per episode (and per group) with its per-step densities, and the share of
    first and of later steps it flags (:func:`choicebc.choice.pick_choice`).
    """
    head = resolve_head_name(cfg.head, n_actions)
    if cfg.choice == "step" or head != "choicenet" or n_actions is not None:
        return ("step" if cfg.choice == "auto" else cfg.choice), {}
    rows = train_idx[data["timesteps"][train_idx] < cfg.choice_horizon]
    warmup_steps = min(cfg.steps, max(PROBE_MIN_STEPS, int(cfg.choice_warmup * cfg.steps)))
    warmup_cfg = TrainConfig(
        **{
            **asdict(cfg),
            "choice": "step",
            "steps": warmup_steps,
            "val_fraction": 0.0,
            "clean_only": False,
        }
    )
    first_steps = SimpleNamespace(
        observations=data["obs"][rows],
        actions=data["actions"][rows],
        episode_ids=data["episode_ids"][rows],
    )
    _fit_median(policy, first_steps.observations, first_steps.actions, cfg)
    train_bc(first_steps, config=warmup_cfg, progress=False, init_policy=policy)
    info: dict[str, Any] = {"warmup_steps": warmup_steps, "horizon": cfg.choice_horizon}
    if cfg.choice != "auto":
        return cfg.choice, info
    groups = getattr(demos, "groups", None)
    unit_sets = {"episode": unit_ids(data["episode_ids"], None, "episode")}
    if groups is not None:
        unit_sets["group"] = unit_ids(data["episode_ids"], groups, "group")
    log_liks = choice_log_likelihoods(
        policy,
        torch.from_numpy(data["obs"][rows]),
        torch.from_numpy(data["actions"][rows]),
        data["timesteps"][rows],
        {name: (units[rows], n) for name, (units, n) in unit_sets.items()},
    )
    quality = policy.data_quality(observations=data["obs"][rows], actions=data["actions"][rows])
    flagged = flagged_shares(quality, data["timesteps"][rows])
    chosen = pick_choice(log_liks, flagged)
    return chosen, {**info, "requested": "auto", "log_lik_per_step": log_liks, "flagged": flagged}


@torch.no_grad()
def _validate(policy: BCPolicy, obs, actions, clean) -> tuple[float, float]:
    if len(obs) == 0:
        return math.nan, math.nan
    policy.eval()
    loss = float(policy.head.training_loss(policy.features(obs), actions))
    mse = math.nan
    if clean is not None and clean.any() and policy.discrete:
        # discrete actions: the share of clean steps whose id the policy gets wrong
        mse = float((policy(obs[clean]) != actions[clean][:, 0]).float().mean())
    elif clean is not None and clean.any():
        mse = float(((policy(obs[clean]) - actions[clean]) ** 2).mean())
    policy.train()
    return loss, mse


def train_bc(
    demos: Any,
    head: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    config: TrainConfig | None = None,
    env_id: str | None = None,
    head_kwargs: dict[str, Any] | None = None,
    sample_weights: np.ndarray | None = None,
    init_policy: BCPolicy | None = None,
) -> BCPolicy:
    """Train a :class:`BCPolicy` on demonstrations.

    Args:
        demos: a ``DemoSet`` (or any object with flat ``observations (M, d)``,
            ``actions (M, a)``, optional ``is_corrupt (M,)`` and ``episode_ids (M,)``).
        head, steps, seed: shortcuts overriding the same fields of ``config``.
        out: run folder for logs, checkpoints and the final policy (``None``: keep in memory).
        resume: continue from ``out/checkpoint`` (same config ⇒ same result as uninterrupted).
        progress: show a tqdm bar with loss and steps/s.
        config: full settings; defaults work on the shipped tasks.
        env_id: task id stored with the policy (default: ``demos.env_id`` if present).
        head_kwargs: hyper-parameters for the head.
        sample_weights: ``(M,)`` non-negative weight per transition (``None``: uniform). Batches
            are drawn with probability proportional to the weight (weighted sampling, not a
            weighted loss: every head's loss stays unchanged), so training minimises the
            weighted objective ``sum_i w_i loss_i / sum_i w_i`` in expectation. Used by BCND.
        init_policy: train this policy further (its weights and normalisation) instead of a
            new one; it must fit the demos. The choice's warm-up uses it.

    Raises:
        TrainingDivergedError: loss or gradient became NaN/inf (the last checkpoint is kept).
    """
    cfg = config or TrainConfig()
    overrides = {"head": head, "steps": steps, "seed": seed}
    cfg = TrainConfig(**{**asdict(cfg), **{k: v for k, v in overrides.items() if v is not None}})
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    data = _demo_arrays(demos)
    if sample_weights is not None:
        sample_weights = np.asarray(sample_weights, dtype=np.float64).reshape(-1)
        if sample_weights.shape != (len(data["obs"]),):
            raise ValueError(
                f"sample_weights must have one entry per transition ({len(data['obs'])}), "
                f"got shape {sample_weights.shape}"
            )
        data["weights"] = sample_weights
    if cfg.clean_only:
        if data["is_corrupt"] is None:
            raise ValueError("clean_only needs demos with ground-truth is_corrupt labels")
        keep = ~data["is_corrupt"]
        data = {k: (v[keep] if v is not None else None) for k, v in data.items()}
    train_idx, val_idx = split_episodes(data["episode_ids"], cfg.val_fraction, cfg.seed)
    if len(train_idx) < MIN_TRAIN_TRANSITIONS:  # the observation std needs two
        raise ValueError(
            f"training needs at least {MIN_TRAIN_TRANSITIONS} transitions outside the "
            f"validation split; these demos give {len(train_idx)} of {len(data['obs'])} "
            f"(val_fraction {cfg.val_fraction:g}, whole episodes held out): collect more "
            "demonstrations, or lower --val-fraction"
        )
    n_actions = getattr(demos, "n_actions", None)
    validate_choice(cfg.choice, resolve_head_name(cfg.head, n_actions), n_actions is not None)
    _schedule(cfg)  # validates the choice schedule's fields
    if len(val_idx) > VAL_MAX_TRANSITIONS:  # same subset every log row (and after --resume)
        pick = np.random.default_rng(cfg.seed).choice(len(val_idx), VAL_MAX_TRANSITIONS, False)
        val_idx = val_idx[np.sort(pick)]

    # seeding, in one place
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)

    obs = torch.from_numpy(data["obs"])
    actions = torch.from_numpy(data["actions"])
    train_obs, train_act = obs[train_idx], actions[train_idx]
    train_cdf = None if sample_weights is None else weights_cdf(data["weights"][train_idx])
    val_obs, val_act = obs[val_idx], actions[val_idx]
    val_clean = None
    if data["is_corrupt"] is not None:
        val_clean = torch.from_numpy(~data["is_corrupt"][val_idx])
    low = getattr(demos, "action_low", None)
    high = getattr(demos, "action_high", None)

    def new_policy() -> BCPolicy:
        return BCPolicy(
            obs.shape[1],
            actions.shape[1],
            head=cfg.head,
            hidden=cfg.hidden,
            obs_mean=train_obs.mean(0).numpy(),
            obs_std=train_obs.std(0).numpy(),
            action_low=low,
            action_high=high,
            env_id=env_id or getattr(demos, "env_id", None),
            head_kwargs=head_kwargs,
            n_actions=n_actions,
        )

    policy = new_policy() if init_policy is None else init_policy
    if (policy.obs_dim, policy.act_dim) != (obs.shape[1], actions.shape[1]):
        raise ValueError(
            f"init_policy is for obs/act dims {(policy.obs_dim, policy.act_dim)}, the demos "
            f"have {(obs.shape[1], actions.shape[1])}"
        )
    out = Path(out) if out is not None else None
    ckpt_dir = out / "checkpoint" if out else None
    resuming = resume and ckpt_dir is not None and _recover_checkpoint(ckpt_dir)
    if resuming:  # the choice (and the warm-up) are in the checkpoint
        saved = BCPolicy.load(ckpt_dir)
        choice, choice_info = saved.choice, saved.choice_info
    else:
        choice, choice_info = _choose(cfg, demos, data, train_idx, n_actions, policy)
        if choice == "step" and cfg.choice == "auto" and choice_info:
            # the probe said per step: start over exactly as choice="step" would
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed)
            generator = torch.Generator().manual_seed(cfg.seed)
            policy = new_policy()
    policy.choice, policy.choice_info = choice, choice_info
    trainer = None
    if choice in ("episode", "group"):
        units, n_units = unit_ids(data["episode_ids"], getattr(demos, "groups", None), choice)
        trainer = ChoiceTraining(
            units[train_idx],
            data["timesteps"][train_idx],
            n_units,
            policy.head.k,
            cfg.steps,
            cfg.batch_size,
            _schedule(cfg),
        )
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    log_path = out / "log.csv" if out else None
    start = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resuming:
            saved = BCPolicy.load(ckpt_dir)
            policy.load_state_dict(saved.state_dict())
            state = torch.load(ckpt_dir / TRAINER_STATE, weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if trainer is not None:
                trainer.load_state_dict(state["choice"])
            start = int(state["step"])
            _truncate_log(log_path, start)
        elif resume:
            raise FileNotFoundError(f"--resume: no checkpoint in {ckpt_dir}")
        elif log_path.exists():
            log_path.unlink()
    writer = None
    if out is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start if start else None)

    def checkpoint(step: int) -> None:
        if ckpt_dir is None:
            return
        if not all(torch.isfinite(p).all() for p in policy.parameters()):
            bar.close()
            raise TrainingDivergedError(
                f"non-finite parameters at step {step}{_last_good(ckpt_dir)}. "
                "Lower --lr, check the demos for outliers of extreme magnitude, or use --resume."
            )
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if trainer is not None:
            state["choice"] = trainer.state_dict()
        _save_checkpoint(ckpt_dir, policy, state)

    policy.train()
    bar = tqdm(
        total=cfg.steps, initial=start, desc=f"train {cfg.head}", disable=not progress, leave=False
    )
    t0, s0 = time.perf_counter(), start
    if trainer is not None and sample_weights is not None:
        raise ValueError("sample_weights and choice='episode'/'group' cannot be combined")
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        # one choice per demonstration: eq. (7)'s L2, weighted by each unit's share on the
        # target's family, is MSE-BC on the demonstrations the target owns, so lambda1 stays
        # at its start; its anneal keeps a per-step model off the drivers' mean, a danger the
        # warm-up (with its own anneal) has passed (docs/design-notes.md)
        policy.head.set_progress(0 if trainer is not None else step, cfg.steps)
        weights: dict[str, Any] = {}
        if trainer is None:
            obs_b, act_b = sample_batch(train_obs, train_act, cfg.batch_size, generator, train_cdf)
        else:  # one choice per demonstration: rows in the horizon, the units' responsibilities
            trainer.before_step(step, policy, train_obs, train_act)
            rows = trainer.sample(step, generator)
            obs_b, act_b = train_obs.index_select(0, rows), train_act.index_select(0, rows)
            weights = trainer.loss_weights(rows)
        features = policy.features(obs_b)
        loss = policy.head.training_loss(features, act_b, **weights)
        if trainer is not None:
            loss = loss + trainer.rho_anchor(policy.head, features, rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # NaN/inf guard, per step on the loss only: a non-finite gradient with a finite loss
        # makes the parameters non-finite, which the next step's loss shows; checkpoints check
        # the parameters themselves, so a bad step never reaches the last good checkpoint
        if not torch.isfinite(loss):
            bar.close()
            where = _last_good(ckpt_dir)
            raise TrainingDivergedError(
                f"non-finite loss/gradient at step {step} (loss={float(loss.detach())}){where}. "
                "Lower --lr, check the demos for outliers of extreme magnitude, or use --resume."
            )
        optimizer.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            val_loss, val_mse = _validate(policy, val_obs, val_act, val_clean)
            sps = (done - s0) / max(time.perf_counter() - t0, 1e-9)
            row = {
                "step": done,
                "loss": float(loss.detach()),
                "val_loss": val_loss,
                "val_clean_mse": val_mse,
                "lr": lr_at(cfg, step),
                "steps_per_s": sps,
            }
            bar.set_postfix(loss=f"{row['loss']:.3g}", val=f"{val_loss:.3g}", sps=f"{sps:.0f}")
            if log_path is not None:
                _write_log_row(log_path, row)
                for key in LOG_FIELDS[1:]:
                    writer.add_scalar(key, row[key], done)
        if ckpt_dir is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
            checkpoint(done)
        bar.update(1)
    bar.close()
    policy.eval()
    if out is not None:
        checkpoint(cfg.steps)
        policy.save(out / "policy")
        writer.close()
    return policy
