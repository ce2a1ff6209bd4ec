"""``choicebc bench sim``: env-steps/s of ``cb.evaluate`` on the cpu backend vs its two bounds.

For each task, in one run and with N simulations:

* **evaluate**: :func:`choicebc.evaluate` on the ``cpu`` backend with a 256x256 MLP policy in the
  loop (two half-batches in flight); optionally (``--naive``) the same without the overlap;
* **physics limit**: one ``mujoco.batch.Batch`` of N simulations stepped with uniform random
  actions, no observation, no policy — measured before and after the evaluation, averaged;
* **SyncVectorEnv**: gymnasium's ``SyncVectorEnv`` of N ``gym.make`` envs with the same policy.

The policy is a random-weight 256x256 MLP whose output layer is scaled by 10, so its tanh actions
spread over the action box like the random actions of the physics-limit run. The scale matters:
at default initialisation the actions are near zero, the bodies come to rest on the floor and
the physics costs ~25% more per step (more contacts) than under random actions, which would be
charged to the evaluator. Machines here are shared: compare the ratios, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

DEFAULT_TASKS = (
    "HalfCheetah-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Ant-v5",
    "Swimmer-v5",
    "InvertedDoublePendulum-v5",
    "choicebc/PointReach-v0",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-ids", nargs="+", default=list(DEFAULT_TASKS), help="tasks")
    parser.add_argument("--num-envs", type=int, default=256, help="N, parallel simulations")
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes per evaluation (default N, more for short episodes: see --min-steps)",
    )
    parser.add_argument(
        "--min-steps",
        type=int,
        default=50_000,
        help="if N episodes make fewer env-steps, evaluate again with enough episodes",
    )
    parser.add_argument(
        "--limit-steps", type=int, default=50, help="batch steps per physics-limit run (x2)"
    )
    parser.add_argument(
        "--sync-steps", type=int, default=20, help="vector steps of the SyncVectorEnv baseline"
    )
    parser.add_argument("--naive", action="store_true", help="also time evaluate without overlap")
    parser.add_argument("--seed", type=int, default=0, help="seed of policy, actions and episodes")
    parser.add_argument("--out", default="results/bench_sim.json", help="JSON output path")


def benchmark_policy(obs_dim: int, act_dim: int, seed: int):
    """The 256x256 MLP (ReLU, tanh output scaled to cover the box) used in every loop."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    sizes = [(obs_dim, 256), (256, 256), (256, act_dim)]
    layers = [torch.nn.Linear(i, o) for i, o in sizes]
    with torch.no_grad():
        for layer in layers:
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
        layers[-1].weight.mul_(10.0)
        layers[-1].bias.mul_(10.0)
    return torch.nn.Sequential(
        layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2], torch.nn.Tanh()
    ).eval()


def physics_limit(env_id: str, num_envs: int, steps: int, seed: int) -> float:
    """Env-steps/s of one ``mujoco.batch.Batch`` with uniform random actions (no obs, no policy)."""
    import mujoco.batch

    from choicebc.envs import get_task

    task = get_task(env_id)
    batch = mujoco.batch.Batch(task.model, num_envs)
    batch.reset()
    ctrl = batch.bind("ctrl")
    rng = np.random.default_rng(seed)
    low, high = task.action_low, task.action_high
    start = time.perf_counter()
    for _ in range(steps):
        ctrl[:] = rng.uniform(low, high, (num_envs, task.act_dim))
        batch.step(nstep=task.frame_skip)
    return num_envs * steps / (time.perf_counter() - start)


def sync_vector_env(env_id: str, policy, num_envs: int, steps: int, seed: int) -> float:
    """Env-steps/s of gymnasium's ``SyncVectorEnv`` with ``policy`` in the loop."""
    import gymnasium as gym
    import torch

    import choicebc.envs  # noqa: F401  (registers choicebc/PointReach-v0)

    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)])
    try:
        obs, _ = envs.reset(seed=seed)
        start = time.perf_counter()
        for _ in range(steps):
            with torch.inference_mode():
                actions = policy(torch.from_numpy(np.asarray(obs, dtype=np.float32))).numpy()
            obs, *_ = envs.step(actions)
        return num_envs * steps / (time.perf_counter() - start)
    finally:
        envs.close()


def measure_task(env_id: str, args: argparse.Namespace) -> dict:
    """One row of the table: the three (or four) rates and their ratios."""
    import torch

    from choicebc.envs import get_task
    from choicebc.evaluation import evaluate

    task = get_task(env_id)
    policy = benchmark_policy(task.obs_dim, task.act_dim, args.seed)
    n = args.num_envs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as evaluate() does; the same for the SyncVectorEnv loop
    try:
        limit_before = physics_limit(env_id, n, args.limit_steps, args.seed)
        episodes = args.episodes or n
        result = evaluate(policy, env_id, episodes, n, seed=args.seed, backend="cpu")
        steps = int(result.lengths.sum())
        if args.episodes is None and steps < args.min_steps:
            episodes = math.ceil(episodes * args.min_steps / steps)
            result = evaluate(policy, env_id, episodes, n, seed=args.seed, backend="cpu")
        naive = None
        if args.naive:
            naive = evaluate(
                policy, env_id, episodes, n, seed=args.seed, backend="cpu", pipeline=False
            ).steps_per_second
        limit_after = physics_limit(env_id, n, args.limit_steps, args.seed + 1)
        sync = sync_vector_env(env_id, policy, n, args.sync_steps, args.seed)
    finally:
        torch.set_num_threads(threads)
    limit = (limit_before + limit_after) / 2
    return {
        "env_id": env_id,
        "evaluate": result.steps_per_second,
        "evaluate_naive": naive,
        "physics_limit": limit,
        "physics_limit_runs": [limit_before, limit_after],
        "sync_vector_env": sync,
        "ratio_limit": result.steps_per_second / limit,
        "ratio_sync": result.steps_per_second / sync,
        "episodes": episodes,
        "evaluate_env_steps": int(result.lengths.sum()),
        "mean_episode_length": result.mean_length,
    }


def markdown_table(rows: list[dict], num_envs: int) -> str:
    naive = any(r["evaluate_naive"] is not None for r in rows)
    head = f"| task (N = {num_envs}) | cpu evaluate + MLP | "
    head += "naive (no overlap) | " if naive else ""
    head += "physics limit | SyncVectorEnv + MLP | evaluate / limit | evaluate / SyncVectorEnv |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["env_id"], f"{r['evaluate']:,.0f}"]
        if naive:
            cells.append(f"{r['evaluate_naive']:,.0f}" if r["evaluate_naive"] else "")
        cells += [
            f"{r['physics_limit']:,.0f}",
            f"{r['sync_vector_env']:,.0f}",
            f"{r['ratio_limit']:.2f}x",
            f"{r['ratio_sync']:.1f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import gymnasium
    import mujoco
    import torch

    load_before = os.getloadavg()
    rows = []
    for env_id in args.env_ids:
        row = measure_task(env_id, args)
        rows.append(row)
        print(
            f"{env_id}: evaluate {row['evaluate']:,.0f}, limit {row['physics_limit']:,.0f}, "
            f"SyncVectorEnv {row['sync_vector_env']:,.0f} env-steps/s",
            flush=True,
        )
    table = markdown_table(rows, args.num_envs)
    print()
    print(table)
    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "versions": {
            "mujoco": mujoco.__version__,
            "gymnasium": gymnasium.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "table": table}, indent=2) + "\n")
    print(f"\nload average before/after: {load_before} / {meta['loadavg_after']}; wrote {out}")
    return 0
