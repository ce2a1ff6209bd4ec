"""gpu backend (MuJoCo Warp) check: throughput beside the cpu backend, and drift from gymnasium.

For each task, in one run:

* env-steps/s of ``GpuBatchedEnv`` (random actions, N worlds, on ``--device``) and of the ``cpu``
  backend with the same N and actions; their ratio;
* state-forced one-step error: gymnasium's state is loaded before every step, both simulators take
  the same action; the largest observation difference over ``--steps`` steps;
* open-loop drift: no forcing; the observation difference after 1, 10, 50 and ``--steps`` steps,
  beside MuJoCo's own drift when its start state is rounded to float32 (what float32 costs in a
  chaotic system, with MuJoCo's float64 physics).

Prints a markdown table and writes ``results/bench_sim_gpu.json``.

    python scripts/bench_sim_gpu.py --device cpu                  # every task, N = 64
    python scripts/bench_sim_gpu.py --device cuda --num-envs 4096 --env-ids Ant-v5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import gymnasium as gym
import numpy as np
from choicebc.envs import get_task, known_env_ids

from choicebc.sim import episode_seed, make_batched
from choicebc.sim.gpu import GpuBatchedEnv

CHECKPOINTS = (1, 10, 50)


def throughput(env_id: str, n: int, device: str, steps: int) -> tuple[float, float]:
    """``(gpu, cpu)`` env-steps/s with the same uniform random actions (after 3 warm-up steps)."""
    rates = []
    for make in (
        lambda: GpuBatchedEnv(env_id, n, seed=0, device=device),
        lambda: make_batched(env_id, n, backend="cpu", seed=0),
    ):
        env = make()
        env.reset()
        rng = np.random.default_rng(0)
        size = (3 + steps, n, env.act_dim)
        actions = rng.uniform(env.action_low, env.action_high, size).astype(np.float32)
        for a in actions[:3]:
            env.step(a)
        actions = actions[3:]
        start = time.perf_counter()
        for a in actions:
            env.step(a)
        rates.append(n * steps / (time.perf_counter() - start))
        env.close()
    return rates[0], rates[1]


def drift(env_id: str, device: str, steps: int, forced: bool) -> dict[int, float]:
    """Largest |obs difference| of slot 0 vs gymnasium up to each checkpoint (and ``steps``)."""
    task = get_task(env_id)
    limit = task.max_episode_steps
    env = GpuBatchedEnv(env_id, 1, seed=11, device=device)
    ref = gym.make(env_id, max_episode_steps=limit)
    obs, info = env.reset()
    ref.reset(seed=int(info["episode_seed"][0]))
    rng = np.random.default_rng(3)
    worst, out = 0.0, {}
    for t in range(1, steps + 1):
        a = rng.uniform(env.action_low, env.action_high, (1, env.act_dim)).astype(np.float32)
        if forced:
            u = ref.unwrapped
            env.set_state(u.data.qpos[None], u.data.qvel[None])
        _, _, term, trunc, info = env.step(a)
        ref_obs, _, ref_term, ref_trunc, _ = ref.step(a[0])
        worst = max(worst, float(np.abs(info["final_obs"][0] - ref_obs).max()))
        if t in CHECKPOINTS or t == steps:
            out[t] = worst
        if term[0] or trunc[0] or ref_term or ref_trunc:
            if not forced:  # the trajectories parted: the drift is the difference so far
                out.update({c: worst for c in (*CHECKPOINTS, steps) if c >= t})
                out["ended_at"] = t
                break
            ref.reset(seed=int(info["episode_seed"][0]))
    env.close()
    ref.close()
    return out


def float32_baseline(env_id: str, steps: int) -> dict[int, float]:
    """MuJoCo (float64) from gymnasium's start state vs from that state rounded to float32."""
    a_env, b_env = gym.make(env_id), gym.make(env_id)
    seed = episode_seed(11, 0)  # episode 0 of drift()'s env
    a_env.reset(seed=seed)
    b_env.reset(seed=seed)
    b = b_env.unwrapped
    b.set_state(b.data.qpos.astype(np.float32), b.data.qvel.astype(np.float32))
    rng = np.random.default_rng(3)
    worst, out = 0.0, {}
    for t in range(1, steps + 1):
        low, high = a_env.action_space.low, a_env.action_space.high
        a = rng.uniform(low, high).astype(np.float32)
        oa, _, ta, ua, _ = a_env.step(a)
        ob, _, tb, ub, _ = b_env.step(a)
        worst = max(worst, float(np.abs(oa - ob).max()))
        if t in CHECKPOINTS or t == steps:
            out[t] = worst
        if ta or ua or tb or ub:
            out.update({c: worst for c in (*CHECKPOINTS, steps) if c >= t})
            out["ended_at"] = t
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-ids", nargs="+", default=known_env_ids())
    parser.add_argument("--device", default="cpu", help="cpu (Warp's CPU device) or cuda[:K]")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--timed-steps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200, help="drift horizon")
    parser.add_argument("--out", default="results/bench_sim_gpu.json")
    args = parser.parse_args(argv)
    rows = []
    for env_id in args.env_ids:
        gpu_rate, cpu_rate = throughput(env_id, args.num_envs, args.device, args.timed_steps)
        forced = drift(env_id, args.device, args.steps, forced=True)
        free = drift(env_id, args.device, args.steps, forced=False)
        base = float32_baseline(env_id, args.steps)
        rows.append(
            {
                "env_id": env_id,
                "device": args.device,
                "num_envs": args.num_envs,
                "gpu_steps_per_s": gpu_rate,
                "cpu_steps_per_s": cpu_rate,
                "forced_max_obs_err": forced[args.steps],
                "open_loop": {str(k): v for k, v in free.items()},
                "mujoco_f32_start": {str(k): v for k, v in base.items()},
            }
        )
        print(f"{env_id}: done", file=sys.stderr, flush=True)

    hdr = [f"drift@{c}" for c in (*CHECKPOINTS, args.steps)]
    print(
        f"| task | gpu backend ({args.device}, N={args.num_envs}) steps/s | cpu backend steps/s "
        f"| gpu/cpu | forced 1-step max err | open loop {' / '.join(hdr)} "
        f"| MuJoCo f32-start {' / '.join(hdr)} |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            " / ".join(f"{d[str(c)]:.1e}" for c in (*CHECKPOINTS, args.steps))
            + (f" (ended at {d['ended_at']})" if "ended_at" in d else "")
            for d in (r["open_loop"], r["mujoco_f32_start"])
        ]
        print(
            f"| {r['env_id']} | {r['gpu_steps_per_s']:,.0f} | {r['cpu_steps_per_s']:,.0f} "
            f"| {r['gpu_steps_per_s'] / r['cpu_steps_per_s']:.3f} "
            f"| {r['forced_max_obs_err']:.1e} | {cells[0]} | {cells[1]} |"
        )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
