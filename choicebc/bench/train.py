"""``choicebc bench train``: optimizer steps/s of each head, bare and inside ``train_bc``.

Two measurements on the shape of a HalfCheetah policy (backbone 17 -> 256 -> 256 ReLU, D = 6
actions, K = 5 mixtures, batch 256, Adam, CPU):

1. **Bare head step** -- forward, loss, backward and Adam on pre-made batches, for every head
   (``mse``, ``mdn``, ``choicenet``, ``l1``, ``robust``). The figure that matters is the ratio
   ``head step time / mse step time`` measured in the same run (issue 2: ChoiceNet <= 1.5x).
2. **``train_bc`` end to end** -- the real training loop on an in-memory synthetic DemoSet of
   1 M transitions (1,000 episodes of 1,000 steps): batch sampling, the lr schedule, the NaN
   guard and the periodic validation included. Its steady-state rate is the slope between two
   runs of different length (so the one-off setup -- the split, copying 1 M rows, building the
   policy -- cancels), compared with the bare step of the same head (issue 5: >= 90 %).
3. With ``--episode-choice``: ``train_bc`` with ChoiceNet's one choice per episode against
   one per step, on the same data (issue 19: <= 1.5x), E-steps included.

Heads are timed in interleaved rounds (mse, mdn, choicenet, ..., mse, ...) so that load on a
shared machine hits every head alike. Both wall-clock and process CPU time are reported: on a
loaded machine the CPU-time figures are the steadier of the two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from choicebc.bench import write_result

if TYPE_CHECKING:  # imported where used: `choicebc bench train --help` does not load torch
    import torch

DEFAULT_HEADS = ("mse", "mdn", "choicenet", "l1", "robust")
MIXTURE_HEADS = ("mdn", "choicenet")
CHOICENET_MAX_COST = 1.5
"""Issue 2: a ChoiceNet step may cost at most 1.5x an MSE step."""
TRAIN_BC_MIN_SHARE = 0.9
"""Issue 5: ``train_bc`` must run at >= 90 % of the bare head step's rate."""
EPISODE_CHOICE_MAX_COST = 1.5
"""Issue 19: a train_bc step with one choice per episode may cost at most 1.5x one per step."""
CHOICES = ("step", "episode")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heads", nargs="+", default=list(DEFAULT_HEADS), help="heads to time")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--mixtures", type=int, default=5, help="K for mixture heads")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200, help="bare steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per head")
    parser.add_argument(
        "--transitions", type=int, default=1_000_000, help="synthetic DemoSet size for train_bc"
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        nargs=2,
        default=[500, 1500],
        metavar=("SHORT", "LONG"),
        help="lengths of the two train_bc runs whose time difference gives the rate",
    )
    parser.add_argument("--train-rounds", type=int, default=2, help="train_bc rounds per head")
    parser.add_argument(
        "--episode-choice",
        action="store_true",
        help="also time train_bc with ChoiceNet's one choice per episode against one per step "
        "(its own runs: --choice-steps)",
    )
    parser.add_argument(
        "--choice-steps",
        type=int,
        nargs=2,
        default=[2_000, 10_000],
        metavar=("SHORT", "LONG"),
        help="train_bc run lengths of the choice comparison: long enough that the E-steps over "
        "whole episodes (one per pass over the data) are in the slope",
    )
    parser.add_argument("--no-train-bc", action="store_true", help="only the bare head steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/bench_train.json", help="JSON result file")


# ------------------------------------------------------------------ bare head step
def _model(head: str, args: argparse.Namespace) -> torch.nn.Module:
    import torch

    from choicebc.heads import make_head

    layers: list[torch.nn.Module] = []
    width = args.obs_dim
    for size in args.hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    kwargs = {"n_mixtures": args.mixtures} if head in MIXTURE_HEADS else {}
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
        loss = head.training_loss(backbone(obs), act)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, time.process_time() - start_cpu


# ------------------------------------------------------------------ train_bc end to end
@dataclass
class SyntheticDemos:
    """The fields ``train_bc`` reads from a DemoSet, as flat in-memory arrays.

    Attributes:
        observations: ``(M, obs_dim) float32``.
        actions: ``(M, act_dim) float32`` in [-1, 1].
        is_corrupt: ``(M,) bool``, 30 % True (only the validation metric reads it).
        episode_ids: ``(M,) int64``, episodes of ``episode_len`` steps.
    """

    observations: np.ndarray
    actions: np.ndarray
    is_corrupt: np.ndarray
    episode_ids: np.ndarray
    env_id: str | None = None
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None


def synthetic_demos(
    transitions: int, obs_dim: int, act_dim: int, seed: int, episode_len: int = 1000
) -> SyntheticDemos:
    """A DemoSet-shaped object of ``transitions`` random steps (content does not matter for
    speed; shapes, dtypes and the episode structure do)."""
    rng = np.random.default_rng(seed)
    return SyntheticDemos(
        observations=rng.standard_normal((transitions, obs_dim), dtype=np.float32),
        actions=np.tanh(rng.standard_normal((transitions, act_dim), dtype=np.float32)),
        is_corrupt=rng.random(transitions) < 0.3,
        episode_ids=np.arange(transitions) // episode_len,
        action_low=-np.ones(act_dim, dtype=np.float32),
        action_high=np.ones(act_dim, dtype=np.float32),
    )


def _time_train_bc(
    demos: SyntheticDemos, head: str, steps: int, args, choice: str = "step"
) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one in-memory ``train_bc`` run of ``steps`` steps."""
    from choicebc.train import TrainConfig, train_bc

    cfg = TrainConfig(
        head=head,
        steps=steps,
        batch_size=args.batch_size,
        hidden=tuple(args.hidden),
        seed=args.seed,
        checkpoint_every=0,
        choice=choice,
    )
    kwargs = {"n_mixtures": args.mixtures} if head in MIXTURE_HEADS else None
    start, start_cpu = time.perf_counter(), time.process_time()
    train_bc(demos, config=cfg, progress=False, head_kwargs=kwargs)
    return time.perf_counter() - start, time.process_time() - start_cpu


def _time_choices(args) -> dict[str, dict[str, float]]:
    """Seconds per ``train_bc`` step of ChoiceNet with one choice per step and per episode:
    the slope between a short and a long run of each (the warm-up, the same length in both,
    cancels; the E-steps -- one pass over the rows in the horizon each -- stay in)."""
    from tqdm.auto import tqdm

    short, long = args.choice_steps
    if not 0 < short < long:
        raise ValueError(f"--choice-steps needs 0 < SHORT < LONG, got {short} {long}")
    demos = synthetic_demos(args.transitions, args.obs_dim, args.act_dim, args.seed)
    out: dict[str, dict[str, list[float]]] = {c: {"wall": [], "CPU": []} for c in CHOICES}
    bar = tqdm(total=args.train_rounds * len(CHOICES), desc="bench train: choice")
    for _ in range(args.train_rounds):
        for choice in CHOICES:
            w1, c1 = _time_train_bc(demos, "choicenet", short, args, choice)
            w2, c2 = _time_train_bc(demos, "choicenet", long, args, choice)
            out[choice]["wall"].append((w2 - w1) / (long - short))
            out[choice]["CPU"].append((c2 - c1) / (long - short))
            bar.update(1)
    bar.close()
    return {c: {k: statistics.median(v) for k, v in d.items()} for c, d in out.items()}


def _choice_table(cost: dict[str, dict[str, float]]) -> str:
    rows = [
        "| choicenet choice | train_bc steps/s (wall) | train_bc steps/s (CPU) | cost / step "
        "choice (wall) | cost / step choice (CPU) |",
        "|---|---|---|---|---|",
    ]
    for c in CHOICES:
        w, cpu = cost[c]["wall"], cost[c]["CPU"]
        rows.append(
            f"| {c} | {1 / w:.0f} | {1 / cpu:.0f} | {w / cost['step']['wall']:.2f}x | "
            f"{cpu / cost['step']['CPU']:.2f}x |"
        )
    return "\n".join(rows)


# ------------------------------------------------------------------ report
def _table(heads, bare_w, bare_c, bc_w, bc_c, cmp_w, cmp_c) -> str:
    """Markdown table; ``cmp_*`` are the bare steps timed beside the train_bc runs."""
    cols = ["head", "bare steps/s (wall)", "bare steps/s (CPU)", "cost / mse (wall)",
            "cost / mse (CPU)"]  # fmt: skip
    if bc_w:
        cols += ["train_bc steps/s (wall)", "train_bc steps/s (CPU)", "train_bc / bare (wall)",
                 "train_bc / bare (CPU)"]  # fmt: skip
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for h in heads:
        cells = [h, f"{1 / bare_w[h]:.0f}", f"{1 / bare_c[h]:.0f}"]
        for d in (bare_w, bare_c):
            cells.append(f"{d[h] / d['mse']:.2f}x" if "mse" in d else "n/a")
        if bc_w:
            cells += [f"{1 / bc_w[h]:.0f}", f"{1 / bc_c[h]:.0f}"]
            cells += [f"{cmp_w[h] / bc_w[h]:.0%}", f"{cmp_c[h] / bc_c[h]:.0%}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if "mse" not in args.heads:
        raise ValueError("--heads must include mse: every cost is reported relative to it")
    batches = [
        (torch.randn(args.batch_size, args.obs_dim), torch.rand(args.batch_size, args.act_dim))
        for _ in range(16)
    ]
    models = {h: _model(h, args).train() for h in args.heads}
    # the optimizer train_bc builds (Adam with its lr and weight decay): the bare step then
    # differs from a train_bc step only by the loop around it (batch sampling, the NaN/inf
    # guard, the lr schedule, validation)
    from choicebc.train import TrainConfig

    defaults = TrainConfig()
    opts = {
        h: torch.optim.Adam(m.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
        for h, m in models.items()
    }
    for h in args.heads:  # warm-up: allocator, autograd graph caches
        _time_steps(models[h], opts[h], batches, 20)
    wall: dict[str, list[float]] = {h: [] for h in args.heads}
    cpu: dict[str, list[float]] = {h: [] for h in args.heads}
    bar = tqdm(total=args.rounds * len(args.heads), desc="bench train: bare steps")
    for _ in range(args.rounds):
        for h in args.heads:
            w, c = _time_steps(models[h], opts[h], batches, args.steps)
            wall[h].append(w / args.steps)
            cpu[h].append(c / args.steps)
            bar.update(1)
    bar.close()
    bare_w = {h: statistics.median(v) for h, v in wall.items()}
    bare_c = {h: statistics.median(v) for h, v in cpu.items()}

    bc_wall: dict[str, list[float]] = {h: [] for h in args.heads}
    bc_cpu: dict[str, list[float]] = {h: [] for h in args.heads}
    near_wall: dict[str, list[float]] = {h: [] for h in args.heads}
    near_cpu: dict[str, list[float]] = {h: [] for h in args.heads}
    if not args.no_train_bc:
        short, long = args.train_steps
        if not 0 < short < long:
            raise ValueError(f"--train-steps needs 0 < SHORT < LONG, got {short} {long}")
        demos = synthetic_demos(args.transitions, args.obs_dim, args.act_dim, args.seed)
        bar = tqdm(total=args.train_rounds * len(args.heads), desc="bench train: train_bc")
        for _ in range(args.train_rounds):
            for h in args.heads:
                # bare steps of the same head right beside its train_bc runs: same load
                w0, c0 = _time_steps(models[h], opts[h], batches, args.steps)
                near_wall[h].append(w0 / args.steps)
                near_cpu[h].append(c0 / args.steps)
                w1, c1 = _time_train_bc(demos, h, short, args)
                w2, c2 = _time_train_bc(demos, h, long, args)
                bc_wall[h].append((w2 - w1) / (long - short))
                bc_cpu[h].append((c2 - c1) / (long - short))
                bar.update(1)
        bar.close()
    bc_w = {h: statistics.median(v) for h, v in bc_wall.items() if v}
    bc_c = {h: statistics.median(v) for h, v in bc_cpu.items() if v}
    # train_bc is compared with the bare steps timed beside it (same load), not round 1's
    cmp_w = {h: statistics.median(v) for h, v in near_wall.items() if v} or bare_w
    cmp_c = {h: statistics.median(v) for h, v in near_cpu.items() if v} or bare_c

    table = _table(args.heads, bare_w, bare_c, bc_w, bc_c, cmp_w, cmp_c)
    checks = []
    choice_cost = {}
    if args.episode_choice:
        choice_cost = _time_choices(args)
        table += "\n\n" + _choice_table(choice_cost)
        for kind in ("wall", "CPU"):
            ratio = choice_cost["episode"][kind] / choice_cost["step"][kind]
            verdict = "PASS" if ratio <= EPISODE_CHOICE_MAX_COST else "FAIL"
            checks.append(
                f"{verdict}: train_bc choicenet step cost, episode / step choice ({kind}) "
                f"{ratio:.2f}x (target <= {EPISODE_CHOICE_MAX_COST}x)"
            )
    if "choicenet" in args.heads:
        for kind, d in (("wall", bare_w), ("CPU", bare_c)):
            ratio = d["choicenet"] / d["mse"]
            verdict = "PASS" if ratio <= CHOICENET_MAX_COST else "FAIL"
            checks.append(
                f"{verdict}: choicenet/mse step cost ({kind}) {ratio:.2f}x "
                f"(target <= {CHOICENET_MAX_COST}x)"
            )
    for h in bc_w:
        for kind, bare, bc in (("wall", cmp_w, bc_w), ("CPU", cmp_c, bc_c)):
            share = bare[h] / bc[h]
            verdict = "PASS" if share >= TRAIN_BC_MIN_SHARE else "FAIL"
            checks.append(
                f"{verdict}: train_bc {h} at {share:.0%} of the bare step ({kind}) "
                f"(target >= {TRAIN_BC_MIN_SHARE:.0%})"
            )
    header = (
        f"bench train: {args.obs_dim}->{'->'.join(map(str, args.hidden))}, D={args.act_dim}, "
        f"K={args.mixtures}, batch {args.batch_size}, {args.threads} thread(s); bare: "
        f"{args.rounds} interleaved rounds x {args.steps} steps"
    )
    if bc_w:
        header += (
            f"; train_bc: {args.transitions:,} in-memory transitions, rate = slope between "
            f"{args.train_steps[0]}- and {args.train_steps[1]}-step runs, "
            f"{args.train_rounds} round(s); medians"
        )
    print(f"{header}\n\n{table}\n\n" + "\n".join(checks))
    payload = {
        "table": table,
        "checks": checks,
        "bare_wall_seconds_per_step": wall,
        "bare_cpu_seconds_per_step": cpu,
        "bare_steps_per_second_wall": {h: 1 / s for h, s in bare_w.items()},
        "bare_steps_per_second_cpu": {h: 1 / s for h, s in bare_c.items()},
        "cost_ratio_vs_mse_wall": {h: s / bare_w["mse"] for h, s in bare_w.items()},
        "cost_ratio_vs_mse_cpu": {h: s / bare_c["mse"] for h, s in bare_c.items()},
        "choice_seconds_per_step": choice_cost,
        "train_bc_wall_seconds_per_step": bc_wall,
        "train_bc_cpu_seconds_per_step": bc_cpu,
        "bare_beside_train_bc_wall_seconds_per_step": near_wall,
        "bare_beside_train_bc_cpu_seconds_per_step": near_cpu,
        "train_bc_share_of_bare_wall": {h: cmp_w[h] / bc_w[h] for h in bc_w},
        "train_bc_share_of_bare_cpu": {h: cmp_c[h] / bc_c[h] for h in bc_c},
    }
    meta = write_result(args.out, args, load_before, payload)
    print(f"\nload average before/after: {load_before} / {meta['loadavg_after']}; wrote {args.out}")
    return 0
