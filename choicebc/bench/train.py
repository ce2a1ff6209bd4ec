"""``choicebc bench train``: optimizer steps/s of each head on the same BC backbone.

Backbone 17 -> 256 -> 256 (ReLU), D = 6 actions, K = 5 mixtures, batch 256, Adam, CPU: the shape
of a HalfCheetah policy. Heads are timed in interleaved rounds (mse, mdn, choicenet, mse, ...)
so that load on a shared machine hits every head alike; the figure that matters is the ratio
``choicenet step time / mse step time`` measured in the same run. Both wall-clock and process
CPU time are reported: on a loaded machine the CPU-time ratio is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from choicebc.heads import make_head

DEFAULT_HEADS = ("mse", "mdn", "choicenet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heads", nargs="+", default=list(DEFAULT_HEADS), help="heads to time")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--mixtures", type=int, default=5, help="K for mixture heads")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per head")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench_train.json"))


def _model(head: str, args: argparse.Namespace) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    width = args.obs_dim
    for size in args.hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    kwargs = {"n_mixtures": args.mixtures} if head in ("mdn", "choicenet") else {}
    return torch.nn.ModuleDict(
        {
            "backbone": torch.nn.Sequential(*layers),
            "head": make_head(head, width, args.act_dim, **kwargs),
        }
    )


def _time_steps(
    model: torch.nn.Module, opt: torch.optim.Optimizer, batches, steps: int
) -> tuple[float, float]:
    """Wall-clock and process CPU seconds for ``steps`` optimizer steps (forward, loss,
    backward, Adam)."""
    head, backbone = model["head"], model["backbone"]
    start, start_cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        obs, act = batches[i % len(batches)]
        loss = head.loss(head(backbone(obs)), act)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, time.process_time() - start_cpu


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    batches = [
        (torch.randn(args.batch_size, args.obs_dim), torch.rand(args.batch_size, args.act_dim))
        for _ in range(16)
    ]
    models = {h: _model(h, args).train() for h in args.heads}
    opts = {h: torch.optim.Adam(m.parameters(), lr=1e-4) for h, m in models.items()}
    for h in args.heads:  # warm-up: allocator, autograd graph caches
        _time_steps(models[h], opts[h], batches, 20)
    wall: dict[str, list[float]] = {h: [] for h in args.heads}
    cpu: dict[str, list[float]] = {h: [] for h in args.heads}
    for _ in range(args.rounds):
        for h in args.heads:
            w, c = _time_steps(models[h], opts[h], batches, args.steps)
            wall[h].append(w / args.steps)
            cpu[h].append(c / args.steps)
    wall_s = {h: statistics.median(v) for h, v in wall.items()}
    cpu_s = {h: statistics.median(v) for h, v in cpu.items()}
    rows = [
        "| head | steps/s (wall) | steps/s (CPU time) | step cost / mse (wall) "
        "| step cost / mse (CPU time) |",
        "|---|---|---|---|---|",
    ]
    for h in args.heads:
        ratio_w = f"{wall_s[h] / wall_s['mse']:.2f}x" if "mse" in wall_s else "n/a"
        ratio_c = f"{cpu_s[h] / cpu_s['mse']:.2f}x" if "mse" in cpu_s else "n/a"
        rows.append(f"| {h} | {1 / wall_s[h]:.0f} | {1 / cpu_s[h]:.0f} | {ratio_w} | {ratio_c} |")
    table = "\n".join(rows)
    print(
        f"bench train: {args.obs_dim}->{'->'.join(map(str, args.hidden))}, D={args.act_dim}, "
        f"K={args.mixtures}, batch {args.batch_size}, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds x {args.steps} steps, medians\n\n{table}"
    )
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds_per_step": wall,
        "cpu_seconds_per_step": cpu,
        "steps_per_second_wall": {h: 1 / s for h, s in wall_s.items()},
        "steps_per_second_cpu": {h: 1 / s for h, s in cpu_s.items()},
        "cost_ratio_vs_mse_wall": {h: s / wall_s["mse"] for h, s in wall_s.items()}
        if "mse" in wall_s
        else None,
        "cost_ratio_vs_mse_cpu": {h: s / cpu_s["mse"] for h, s in cpu_s.items()}
        if "mse" in cpu_s
        else None,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0
