"""Where the evaluator's threads spend their time: physics, policy, observation code, the rest.

python scripts/profile_evaluate.py                          # HalfCheetah-v5, N = 256
python scripts/profile_evaluate.py --env-id Ant-v5 --episodes 512

Runs ``cb.evaluate`` on the cpu backend with the benchmark's 256x256 MLP (as ``bench sim``)
and per-thread wall-clock timers around the physics, the policy call and the step's
observation/reward code; prints each as a share of the run's wall time, per thread. The timers
cost a few microseconds per call, so the run is slightly slower than an untimed one.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time

import torch
from choicebc.envs import get_task

from choicebc import evaluation
from choicebc.bench.sim import benchmark_policy
from choicebc.sim.cpu import CpuBatchedEnv

PARTS = {"_physics": "physics", "_finish": "observation/reward", "_submit": "step entry"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    spent: dict[tuple[str, str], float] = collections.defaultdict(float)

    def timed(name: str, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[(threading.current_thread().name, name)] += time.perf_counter() - t0

        return wrapper

    for method in PARTS:
        setattr(CpuBatchedEnv, method, timed(method, getattr(CpuBatchedEnv, method)))
    task = get_task(args.env_id)
    act = timed("policy", evaluation.as_policy_fn(benchmark_policy(task.obs_dim, task.act_dim, 0)))
    act.thread_safe = True  # a torch module is; keeps the evaluator's free-running mode
    torch.set_num_threads(1)
    res = evaluation.evaluate(
        act, args.env_id, args.episodes, args.num_envs, seed=args.seed, backend="cpu"
    )
    wall = res.lengths.sum() / res.steps_per_second
    print(f"{res.steps_per_second:,.0f} env-steps/s, {wall:.2f} s wall")
    for thread in sorted({t for t, _ in spent}):
        share = {name: spent[(thread, name)] / wall for name in ("policy", *PARTS)}
        # _submit contains _physics: its own part is the action checks and copies
        share["_submit"] -= share["_physics"]
        rest = 1.0 - sum(share.values())
        cells = ", ".join(f"{PARTS.get(k, k)} {v:.3f}" for k, v in share.items())
        print(f"{thread}: {cells}, rest {rest:.3f}")


if __name__ == "__main__":
    main()
