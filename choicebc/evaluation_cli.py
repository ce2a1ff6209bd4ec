"""``choicebc evaluate``: roll a trained policy or a shipped expert out in the batched simulator."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from choicebc.evaluation import as_policy_fn, evaluate
from choicebc.flags import add_dataclass_arguments, dataclass_from_args
from choicebc.sim import resolve_backend
from choicebc.sim.base import BackendUnavailableError, check_count


@dataclasses.dataclass
class EvaluateConfig:
    """``choicebc evaluate``: roll a policy out in the batched simulator."""

    policy: str | None = None
    """BC policy folder written by `choicebc train` (config.json + model.safetensors)"""
    expert: str | None = None
    """evaluate the shipped expert of this env id instead of --policy"""
    env_id: str | None = None
    """task id (default: the one the policy was trained on)"""
    episodes: int = 100
    """evaluation episodes, each with its own seed"""
    num_envs: int = 100
    """parallel simulations"""
    seed: int = 0
    """evaluation seed"""
    backend: str = "auto"
    """auto, cpu, gpu or gym"""
    json: str | None = None
    """also write the result (per-episode returns included) to this JSON file"""
    video: str | None = None
    """also record one episode (the evaluation seed's first) to this .gif or .mp4 file"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, EvaluateConfig)


def load_policy(cfg: EvaluateConfig) -> tuple[Any, str]:
    """The policy and env id that ``cfg`` names.

    Raises:
        ValueError: neither or both of ``policy`` and ``expert`` are given.
        PolicyLoadError: the policy folder is unreadable, records an env id this choicebc does
            not know, or was trained for another env or other sizes than the task's.
        ExpertLoadError: no expert for ``expert``.
    """
    if (cfg.policy is None) == (cfg.expert is None):
        raise ValueError("give exactly one of --policy DIR and --expert ENV_ID")
    if cfg.expert is not None:
        from choicebc.experts import load_expert  # analytic experts of the 2-D tasks included

        return load_expert(cfg.expert), cfg.expert
    from choicebc.bcnd import load_policy_folder  # a BCPolicy or a BCND ensemble
    from choicebc.envs import UnknownEnvError, get_task
    from choicebc.policy import PolicyLoadError

    policy = load_policy_folder(cfg.policy)
    if cfg.env_id is not None and policy.env_id not in (None, cfg.env_id):
        raise PolicyLoadError(
            f"policy {cfg.policy} was trained on {policy.env_id}, not {cfg.env_id}: evaluate it "
            f"on {policy.env_id}, or train one for {cfg.env_id} with `choicebc train`"
        )
    env_id = cfg.env_id or policy.env_id
    if env_id is None:
        raise ValueError(f"{cfg.policy} does not record its env id: pass --env-id")
    try:
        task = get_task(env_id)
    except UnknownEnvError as exc:
        raise PolicyLoadError(
            f"policy {cfg.policy} was trained on a task this choicebc does not know ({exc}): "
            "evaluate it with the choicebc that trained it"
        ) from exc
    want = {"obs_dim": task.obs_dim, "act_dim": task.act_dim}
    want["n_actions"] = getattr(task, "n_actions", None)
    have = {key: getattr(policy, key, None) for key in want}
    if have != want:
        keys = [k for k in want if have[k] is not None or want[k] is not None]
        raise PolicyLoadError(
            f"policy {cfg.policy} takes {', '.join(f'{k}={have[k]}' for k in keys)} but "
            f"{env_id} has {', '.join(f'{k}={want[k]}' for k in keys)}: its folder is corrupt "
            "or from another task; train one for this task with `choicebc train`"
        )
    return policy, env_id


def run(args: argparse.Namespace) -> int:
    from choicebc.demoset import check_output_path

    cfg = dataclass_from_args(EvaluateConfig, args)
    try:
        # cheap checks first: fail before loading anything or simulating for minutes
        check_count("--episodes", cfg.episodes)
        check_count("--num-envs", cfg.num_envs)
        resolve_backend(cfg.backend)
        if cfg.json:
            check_output_path(cfg.json, overwrite=True, create_folder=True)
        policy, env_id = load_policy(cfg)
        result = evaluate(
            policy, env_id, cfg.episodes, cfg.num_envs, seed=cfg.seed, backend=cfg.backend
        )
    except (ValueError, OSError, BackendUnavailableError) as exc:  # PolicyLoadError, ...
        print(f"choicebc evaluate: {exc}", file=sys.stderr)
        return 2
    print(result)
    if cfg.json:
        from choicebc.atomic import write_json_atomic

        path = write_json_atomic(cfg.json, result.as_dict())
        print(f"wrote {path}")
    if cfg.video:
        from choicebc.sim import episode_seed
        from choicebc.video import VideoUnavailableError, record_episode

        try:
            clip = record_episode(
                as_policy_fn(policy), env_id, cfg.video, episode_seed(cfg.seed, 0)
            )
        except VideoUnavailableError as exc:
            print(f"choicebc evaluate: video skipped: {exc}", file=sys.stderr)
        except ValueError as exc:
            print(f"choicebc evaluate: {exc}", file=sys.stderr)
            return 2
        else:
            print(f"wrote {cfg.video} (return {clip['return']:.1f}, {int(clip['length'])} steps)")
    return 0
