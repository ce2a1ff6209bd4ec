"""Train an expert with stable-baselines3 on gymnasium's own env, checkpointing as it goes.

Resumable: a run folder holds ``checkpoint/`` (the training state as safetensors, npz and JSON —
never a pickle, see :mod:`choicebc.experts.resume`; written crash-safely by
:mod:`choicebc.checkpoint_folder`), ``progress.csv``, and ``best/`` — the exported
inference-only expert (safetensors + JSON card) with the best periodic evaluation so far.
Rerunning the same command resumes from the checkpoint's step; the resumed run starts a fresh
episode (seeded ``seed + step``), so it is not bit-identical to an uninterrupted one. A folder
written by older versions (SB3's pickled ``checkpoint.zip`` / ``replay_buffer.pkl``) is refused,
never read: a pickle runs the code it names when loaded.

``objective="minimize"`` trains a saboteur instead (an adversary, see
:mod:`choicebc.adversaries`): the learner sees the negated reward (:class:`NegatedReward`), the
evaluations still report the task's own return, and ``best/`` keeps the *lowest* one. Such runs
live in ``OUT_DIR/ENV_ID-minimize`` and their card says ``"objective": "minimize"``.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from choicebc.atomic import atomic_path, write_json_atomic
from choicebc.checkpoint_folder import recover_checkpoint_folder, save_checkpoint_folder
from choicebc.experts.config import (
    ALGOS,
    OBJECTIVES,
    ExpertResumeError,
    ExpertTrainConfig,
    ExpertTrainError,
    check_config,
)
from choicebc.experts.policy import ExpertPolicy, MLPActor
from choicebc.experts.resume import load_training_state, read_run, save_training_state

__all__ = [  # the settings live in choicebc.experts.config; imported from here too
    "ALGOS",
    "OBJECTIVES",
    "ExpertResumeError",
    "ExpertTrainConfig",
    "ExpertTrainError",
    "NegatedReward",
    "check_config",
    "run_dir",
    "train_expert",
]

CHECKPOINT_DIR = "checkpoint"
PICKLED_CHECKPOINT_FILES = ("checkpoint.zip", "replay_buffer.pkl")  # written by older versions


class NegatedReward(gym.RewardWrapper):
    """The env with its reward negated: maximising it minimises the task reward."""

    def reward(self, reward):
        return -reward


def run_dir(cfg: ExpertTrainConfig) -> Path:
    if cfg.objective == "minimize":  # never resume an expert's checkpoint as a saboteur
        return Path(cfg.out_dir) / f"{cfg.env_id}-minimize"
    return Path(cfg.out_dir) / cfg.env_id


def export_actor(model, env: gym.Env, cfg: ExpertTrainConfig, extra: dict) -> ExpertPolicy:
    """Copy an SB3 actor's deterministic path into an :class:`ExpertPolicy`."""
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high
    if cfg.algo == "sac":
        trunk, mu, squash, activation = model.actor.latent_pi, model.actor.mu, True, "relu"
    else:
        trunk = model.policy.mlp_extractor.policy_net
        mu, squash, activation = model.policy.action_net, False, "tanh"
    actor = MLPActor(obs_dim, act_dim, tuple(cfg.hidden), low, high, squash, activation)
    linear_src = [m for m in trunk if isinstance(m, torch.nn.Linear)] + [mu]
    linear_dst = [m for m in actor.trunk if isinstance(m, torch.nn.Linear)] + [actor.mu]
    with torch.no_grad():
        for src, dst in zip(linear_src, linear_dst, strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    import gymnasium
    import mujoco
    import stable_baselines3

    card = {
        "env_id": cfg.env_id,
        "algo": cfg.algo,
        "seed": cfg.seed,
        "hidden": list(cfg.hidden),
        "activation": activation,
        "squash": squash,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "action_low": low.tolist(),
        "action_high": high.tolist(),
        "versions": {
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gymnasium.__version__,
            "mujoco": mujoco.__version__,
            "torch": torch.__version__,
        },
        **extra,
    }
    if cfg.objective != "maximize":  # experts' cards keep their original fields
        card["objective"] = cfg.objective
    return ExpertPolicy(actor.eval(), card)


def evaluate_gym(policy: ExpertPolicy, env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` full episodes on one gymnasium env (used during training)."""
    env = gym.make(env_id)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            action = policy(obs[None].astype(np.float32))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.asarray(returns)


def run_settings(cfg: ExpertTrainConfig) -> dict:
    """What a checkpoint must share with the settings that resume it."""
    keys = ("env_id", "algo", "objective", "seed", "hidden")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k in keys}


def resume_step(cfg: ExpertTrainConfig, folder: Path) -> int | None:
    """The step of the run folder's checkpoint (recovered after a crash), or ``None``.

    Raises:
        ExpertResumeError: the folder holds only an older version's pickled checkpoint, or a
            checkpoint of a run with other settings.
    """
    copies = [folder / f"{CHECKPOINT_DIR}{suffix}" for suffix in ("", ".tmp", ".old")]
    existed = [copy.name for copy in copies if copy.exists()]
    step = recover_checkpoint_folder(folder / CHECKPOINT_DIR)
    pickled = [name for name in PICKLED_CHECKPOINT_FILES if (folder / name).exists()]
    if step is None:
        if existed:
            print(f"no complete checkpoint in {folder} ({', '.join(existed)} deleted): step 0")
        if pickled:
            raise ExpertResumeError(
                f"{folder} holds a checkpoint in SB3's pickle format ({', '.join(pickled)}), "
                "written by an older choicebc; it is not loaded, since unpickling runs any code "
                "the file names. Start a fresh run with another --out-dir"
            )
        return None
    if pickled:
        print(f"ignoring {', '.join(pickled)} in {folder} (pickles are never loaded)")
    saved, wanted = read_run(folder / CHECKPOINT_DIR), run_settings(cfg)
    if saved != wanted:
        diff = ", ".join(f"{k}={saved.get(k)!r}" for k in wanted if saved.get(k) != wanted[k])
        raise ExpertResumeError(
            f"the checkpoint in {folder} is of a run with {diff}; resume it with the same "
            "settings, or start a fresh run with another --out-dir"
        )
    return step


def truncate_progress(path: Path, last_step: int) -> None:
    """Drop ``progress.csv`` rows written after the checkpoint a run resumes from."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= last_step]
    if len(kept) == len(rows):
        return
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)


def train_expert(cfg: ExpertTrainConfig, progress: bool = True) -> ExpertPolicy:
    """Train (or resume) an expert; returns the best exported policy seen so far.

    Raises:
        ExpertTrainError: a bad setting or unknown env id.
        ExpertResumeError: the run folder's checkpoint cannot be resumed (see :func:`resume_step`).
    """
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback

    check_config(cfg)
    sign = 1.0 if cfg.objective == "maximize" else -1.0  # best/ keeps the highest sign * return
    torch.set_num_threads(cfg.torch_threads)
    folder = run_dir(cfg)
    try:
        env = gym.make(cfg.env_id)
    except gym.error.Error as exc:
        raise ExpertTrainError(f"cannot make env {cfg.env_id!r}: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    start = resume_step(cfg, folder)
    if sign < 0:
        env = NegatedReward(env)
    ckpt = folder / CHECKPOINT_DIR
    algo_cls = SAC if cfg.algo == "sac" else PPO
    policy_kwargs = {"net_arch": list(cfg.hidden)}
    model = algo_cls("MlpPolicy", env, seed=cfg.seed, device="cpu", policy_kwargs=policy_kwargs)
    log_path = folder / "progress.csv"
    if start is not None:
        load_training_state(model, ckpt)
        model.env.seed(cfg.seed + start)  # the first reset of the resumed run
        truncate_progress(log_path, start)
        print(f"resuming {cfg.env_id} from step {model.num_timesteps}")
    run = run_settings(cfg)

    def checkpoint() -> None:
        step = model.num_timesteps
        save_checkpoint_folder(ckpt, step, lambda tmp: save_training_state(model, tmp, run))

    best_path = folder / "best"
    best_card = best_path / "card.json"
    best_return = -np.inf
    if best_card.exists():
        best_return = sign * ExpertPolicy.load(best_path).card["train_eval_mean_return"]
    last_checkpoint = model.num_timesteps

    class Checkpointing(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(
                total=cfg.total_steps,
                initial=self.model.num_timesteps,
                desc=f"expert {cfg.env_id}",
                disable=not progress,
                mininterval=5.0,
            )
            self.t0, self.n0 = time.time(), self.model.num_timesteps

        def _on_step(self) -> bool:
            nonlocal best_return, last_checkpoint
            step = self.model.num_timesteps
            self.bar.update(step - self.bar.n)
            keep_going = True
            if step % cfg.eval_every == 0:
                extra = {"total_steps": step, "train_eval_episodes": cfg.eval_episodes}
                policy = export_actor(self.model, env, cfg, extra)
                rets = evaluate_gym(policy, cfg.env_id, cfg.eval_episodes, seed=10_000)
                policy.card["train_eval_mean_return"] = float(rets.mean())
                sps = (step - self.n0) / max(time.time() - self.t0, 1e-9)
                new = not log_path.exists()
                with log_path.open("a", newline="") as f:
                    w = csv.writer(f)
                    if new:
                        w.writerow(["step", "eval_mean_return", "eval_std_return", "steps_per_s"])
                    w.writerow([step, f"{rets.mean():.1f}", f"{rets.std():.1f}", f"{sps:.1f}"])
                if sign * rets.mean() > best_return:
                    best_return = float(sign * rets.mean())
                    policy.save(best_path)
                self.bar.set_postfix(ret=f"{rets.mean():.0f}", best=f"{sign * best_return:.0f}")
                policy.save(folder / "last")
                if cfg.snapshots:
                    policy.save(folder / "snapshots" / f"step_{step}")
                if cfg.stop_return is not None and sign * rets.mean() >= sign * cfg.stop_return:
                    print(f"evaluation return {rets.mean():.0f} reached --stop-return at {step}")
                    keep_going = False
            # after the evaluation, so a resumed run neither repeats nor skips it
            if step % cfg.checkpoint_every == 0:
                checkpoint()
                last_checkpoint = step
            return keep_going

        def _on_training_end(self) -> None:
            self.bar.close()

    remaining = cfg.total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=Checkpointing(), reset_num_timesteps=False)
        if model.num_timesteps != last_checkpoint:  # the end of the run is a resume point too
            checkpoint()
    fields = asdict(cfg)
    if cfg.objective == "maximize":  # experts' config.json keeps its original keys
        del fields["objective"]
    write_json_atomic(folder / "config.json", fields, sort_keys=True)
    if not best_card.exists():
        raise ExpertTrainError(
            f"no evaluation ran in {folder} (--eval-every {cfg.eval_every} is more than "
            f"--total-steps {cfg.total_steps}): there is no best/ expert"
        )
    return ExpertPolicy.load(best_path)
