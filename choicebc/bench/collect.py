"""``choicebc bench collect``: transitions/s from the first step to a finished ``.h5`` file.

In one run, with N simulations of one task (HalfCheetah-v5, N = 256 by default):

* **collect + save**: :func:`choicebc.collect` with the expert and the ``flipped`` adversary in
  the loop (step mixing), then :meth:`DemoSet.save` to disk; the rate counts the wall time of both;
* **physics limit**: one ``mujoco.batch.Batch`` of N simulations stepped with uniform random
  actions, no observation, no policy (:func:`choicebc.bench.sim.physics_limit`), measured before
  and after the collection and averaged.

Both are given in wall-clock transitions/s and per CPU-second of this process (all threads): on
a host whose cores are taken by other work the CPU-time ratio is the stable figure, and it is
what the wall-clock ratio tends to when the collector keeps both cores busy.

The expert is the shipped one when there is one; otherwise the benchmark's random-weight 256x256
MLP (the same size as the SAC experts' actors), and the table says so. Machines here are
shared: compare the ratio, measured side by side, and read the absolute figure as context.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from choicebc.bench import write_result
from choicebc.threads import torch_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-id", default="HalfCheetah-v5", help="task")
    parser.add_argument("--num-envs", type=int, default=256, help="N, parallel simulations")
    parser.add_argument(
        "--transitions", type=int, default=1_000_000, help="transitions to record (default 1M)"
    )
    parser.add_argument("--ratio", type=float, default=0.3, help="flipped-adversary ratio")
    parser.add_argument("--mix", default="step", help="step, episode or label")
    parser.add_argument(
        "--limit-steps", type=int, default=200, help="batch steps per physics-limit run (x2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="collection seed")
    parser.add_argument(
        "--h5", default="results/bench_collect.h5", help="the DemoSet file written and timed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the .h5 file afterwards")
    parser.add_argument("--out", default="results/bench_collect.json", help="JSON output path")


def benchmark_expert(env_id: str, seed: int) -> tuple[object, str]:
    """The shipped expert of ``env_id``, or a random-weight 256x256 MLP when none is shipped."""
    from choicebc.bench.sim import benchmark_policy
    from choicebc.envs import get_task
    from choicebc.experts import ExpertLoadError, load_expert

    try:
        expert = load_expert(env_id)
        return expert, f"shipped expert ({expert.card.get('algo', '?')})"
    except ExpertLoadError:
        task = get_task(env_id)
        return (
            benchmark_policy(task.obs_dim, task.act_dim, seed),
            "random-weight 256x256 MLP (no shipped expert yet)",
        )


def measure(args: argparse.Namespace) -> dict:
    """Collect + save once between two physics-limit runs; the rates and their ratio."""

    from choicebc.adversaries import make_adversary
    from choicebc.bench.sim import Timer, physics_limit
    from choicebc.collect import collect

    expert, expert_desc = benchmark_expert(args.env_id, args.seed)
    adversary = make_adversary("flipped", expert)
    path = Path(args.h5)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = args.num_envs
    with torch_threads(1):  # as collect() does while the physics owns the cores
        limit_before = physics_limit(args.env_id, n, args.limit_steps, args.seed)
        with Timer() as total:
            with Timer() as collecting:
                demos = collect(
                    args.env_id,
                    expert,
                    adversary,
                    ratio=args.ratio,
                    mix=args.mix,
                    transitions=args.transitions,
                    num_envs=n,
                    seed=args.seed,
                    backend="cpu",
                )
            demos.save(path, overwrite=True)
        limit_after = physics_limit(args.env_id, n, args.limit_steps, args.seed + 1)
    size = path.stat().st_size
    if not args.keep:
        path.unlink()
    m = demos.num_transitions
    limit = (limit_before["rate"] + limit_after["rate"]) / 2
    cpu_limit = (limit_before["cpu_rate"] + limit_after["cpu_rate"]) / 2
    rate, cpu_rate = m / total.wall, m / total.cpu
    return {
        "env_id": args.env_id,
        "num_envs": n,
        "expert": expert_desc,
        "adversary": "flipped",
        "ratio": args.ratio,
        "mix": args.mix,
        "transitions": demos.num_transitions,
        "episodes": demos.num_episodes,
        "corrupt_share": float(demos.is_corrupt.mean()),
        "collect_seconds": collecting.wall,
        "save_seconds": total.wall - collecting.wall,
        "file_bytes": size,
        "transitions_per_second": rate,
        "collect_only_per_second": m / collecting.wall,
        "physics_limit": limit,
        "physics_limit_runs": [limit_before, limit_after],
        "ratio_limit": rate / limit,
        "transitions_per_cpu_second": cpu_rate,
        "physics_limit_per_cpu_second": cpu_limit,
        "cpu_ratio_limit": cpu_rate / cpu_limit,
    }


def markdown_table(row: dict) -> str:
    lines = [
        f"| task (N = {row['num_envs']}) | expert | collect + save to .h5 | collect only | "
        "physics limit | (collect + save) / limit | same, per CPU-second |",
        "|---|---|---|---|---|---|---|",
        f"| {row['env_id']} | {row['expert']} | {row['transitions_per_second']:,.0f} | "
        f"{row['collect_only_per_second']:,.0f} | {row['physics_limit']:,.0f} | "
        f"{row['ratio_limit']:.2f}x | {row['cpu_ratio_limit']:.2f}x |",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:

    load_before = os.getloadavg()
    row = measure(args)
    table = markdown_table(row)
    print()
    print(table)
    print(
        f"\n{row['transitions']:,} transitions in {row['episodes']} episodes "
        f"({row['corrupt_share']:.1%} flipped): collect {row['collect_seconds']:.1f} s, "
        f"save {row['save_seconds']:.1f} s, {row['file_bytes'] / 1e6:.0f} MB; "
        f"physics limit runs {row['physics_limit_runs'][0]['rate']:,.0f} / "
        f"{row['physics_limit_runs'][1]['rate']:,.0f} env-steps/s; per CPU-second: collect + "
        f"save {row['transitions_per_cpu_second']:,.0f}, physics limit "
        f"{row['physics_limit_per_cpu_second']:,.0f}"
    )
    meta = write_result(args.out, args, load_before, {"row": row, "table": table})
    print(f"load average before/after: {load_before} / {meta['loadavg_after']}; wrote {args.out}")
    return 0
