"""``choicebc quickstart``: the main job end to end on its embedded default.

Shipped HalfCheetah-v5 expert + flipped adversary at 30 % step mixing → collect → train
ChoiceNet-BC, plain MSE-BC and the oracle (MSE-BC on the clean steps only) → evaluate each for
100 episodes → ``runs/quickstart/report.md`` with the table, a learning-curve PNG and a
correlation-map PNG. The methods are the robustness report's (:mod:`choicebc.report.methods`);
everything else is the public API.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from choicebc.atomic import write_json_atomic, write_text_atomic
from choicebc.report.methods import METHODS, BudgetFlags, train_method


@dataclass
class QuickstartConfig(BudgetFlags):
    """Settings of the quickstart (``choicebc quickstart`` flags; the budget flags it shares
    with ``choicebc report`` come from :class:`~choicebc.report.methods.BudgetFlags`)."""

    env_id: str = "HalfCheetah-v5"
    """task with a shipped expert"""
    expert: str = ""
    """expert folder (actor.safetensors + card.json); empty: the shipped one"""
    adversary: str = "flipped"
    """flipped, random, noisy or saboteur"""
    ratio: float = 0.3
    """share of corrupt steps/episodes/labels"""
    mix: str = "step"
    """step, episode or label"""
    seed: int = 0
    """seed of collection, training and evaluation"""
    out: str = "runs/quickstart"
    """output folder"""
    workers: int = 2
    """policies trained in parallel processes (one torch thread each)"""


QUICKSTART_METHODS = ("choicenet", "mse", "oracle")
"""The methods compared (keys of :data:`choicebc.report.methods.METHODS`), in table order."""
LABELS = {METHODS[m].label: m for m in QUICKSTART_METHODS}
"""table label -> method"""


def _run_folder(out: str | Path, label: str) -> Path:
    return Path(out) / label.split(" ")[0].lower()


def _train_one(demos_path: str, label: str, steps: int, seed: int, out: str) -> str:
    """Worker: train one method on the demo file; returns its policy folder."""
    import torch

    import choicebc as cb

    torch.set_num_threads(1)  # a worker process of its own: the workers share the cores
    demos = cb.DemoSet.load(demos_path)
    folder = _run_folder(out, label)
    # no bar here: bars of several processes overwrite each other (the parent shows one)
    train_method(LABELS[label], demos, steps, seed, out=folder, progress=False)
    return str(folder / "policy")


def _logged_step(folder: Path) -> int:
    """The step of the last row of a ``train_bc`` run's ``log.csv`` (0 before the first)."""
    try:
        last = (folder / "log.csv").read_text().strip().splitlines()[-1]
        return int(last.split(",")[0])
    except (OSError, IndexError, ValueError):
        return 0


def _train_all(cfg: QuickstartConfig, demos_path: Path, out: Path) -> dict[str, str]:
    """Train every method in ``cfg.workers`` processes, with one bar over all of them (fed by
    the runs' ``log.csv``, a row every ``log_every`` steps). Returns label -> policy folder."""
    from concurrent.futures import wait

    from tqdm.auto import tqdm

    folders = {label: _run_folder(out, label) for label in LABELS}
    for folder in folders.values():
        (folder / "log.csv").unlink(missing_ok=True)  # a previous run's rows are not progress
    total = cfg.steps * len(LABELS)
    with (
        ProcessPoolExecutor(max_workers=cfg.workers) as pool,
        tqdm(total=total, desc=f"train {len(LABELS)} policies", unit="step") as bar,
    ):
        futures = {
            label: pool.submit(_train_one, str(demos_path), label, cfg.steps, cfg.seed, str(out))
            for label in LABELS
        }
        pending, done = set(futures.values()), dict.fromkeys(LABELS, 0)
        while pending:
            _, pending = wait(pending, timeout=1.0)
            for label, f in futures.items():  # a half-written last row reads as 0: keep the max
                step = cfg.steps if f.done() else _logged_step(folders[label])
                done[label] = max(done[label], min(step, cfg.steps))
            postfix = ", ".join(f"{LABELS[k]} {v}" for k, v in done.items())
            if postfix != bar.postfix:  # redraw on news only (a log file gets a line per redraw)
                bar.set_postfix_str(postfix, refresh=False)
                bar.update(sum(done.values()) - bar.n)
        return {label: f.result() for label, f in futures.items()}


def run_quickstart(cfg: QuickstartConfig) -> Path:
    """Run every stage; returns the path of the written report."""
    import choicebc as cb
    from choicebc.metrics import roc_auc
    from choicebc.plots import plot_learning_curves, plot_trajectory_correlations

    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    expert = cb.load_expert(cfg.env_id, path=cfg.expert or None)
    demos = cb.collect(
        cfg.env_id,
        expert,
        cfg.adversary,
        ratio=cfg.ratio,
        mix=cfg.mix,
        episodes=cfg.episodes,
        num_envs=cfg.num_envs,
        seed=cfg.seed,
    )
    demos_path = out / "demos.h5"
    demos.save(demos_path, overwrite=True)
    timings["collect"] = time.perf_counter() - t
    print(demos.summary())

    t = time.perf_counter()
    folders = _train_all(cfg, demos_path, out)
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    kw = {"episodes": cfg.eval_episodes, "num_envs": cfg.num_envs, "seed": cfg.seed}
    results = {}
    for label, folder in folders.items():
        policy = cb.BCPolicy.load(folder, env_id=cfg.env_id)
        results[label] = cb.evaluate(policy, cfg.env_id, progress=f"evaluate {label}", **kw)
    expert_res = cb.evaluate(expert, cfg.env_id, progress="evaluate the expert", **kw)
    timings["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    print("scoring the demonstrations and drawing the figures ...", flush=True)
    choicenet = cb.BCPolicy.load(folders["ChoiceNet-BC"])
    quality = choicenet.data_quality(demos)
    auc = roc_auc(quality, demos.is_corrupt)
    auc = float("nan") if auc is None else auc
    curves = {label: Path(folder).parent / "log.csv" for label, folder in folders.items()}
    plot_learning_curves(curves, out / "learning_curves.png")
    plot_trajectory_correlations(choicenet, demos, out / "correlations.png")
    timings["plots"] = time.perf_counter() - t
    wall = time.perf_counter() - t_start
    auc_line = f"ChoiceNet data-quality ROC AUC at finding the corrupt steps: {auc:.3f}"

    lines = [
        f"# choicebc quickstart — {cfg.env_id}, {cfg.adversary} adversary, "
        f"{cfg.ratio:.0%} {cfg.mix} mixing",
        "",
        f"{len(demos.actions):,} demonstration transitions from {cfg.episodes} episodes "
        f"({demos.is_corrupt.mean():.1%} corrupt); {cfg.steps:,} optimizer steps per policy; "
        f"{cfg.eval_episodes} evaluation episodes each (seed {cfg.seed}).",
        "",
        "| policy | return (mean ± std) | normalized score | mean episode length |",
        "|---|---|---|---|",
    ]
    for label, res in {"Expert": expert_res, **results}.items():
        score = "n/a" if res.normalized_score is None else f"{res.normalized_score:.1f}"
        lines.append(
            f"| {label} | {res.mean_return:.0f} ± {res.std_return:.0f} | {score} | "
            f"{np.mean(res.lengths):.0f} |"
        )
    lines += [
        "",
        auc_line,
        "",
        "Wall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {wall:.0f} s.",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![correlations](correlations.png)",
        "",
        f"Command: `choicebc quickstart --env-id {cfg.env_id} --adversary {cfg.adversary} "
        f"--ratio {cfg.ratio} --mix {cfg.mix} --seed {cfg.seed}`",
    ]
    report = out / "report.md"
    write_text_atomic(report, "\n".join(lines) + "\n")
    summary = {
        "config": asdict(cfg),
        "results": {
            k: {"mean_return": r.mean_return, "normalized_score": r.normalized_score}
            for k, r in {"expert": expert_res, **results}.items()
        },
        "roc_auc": auc,
        "timings": timings,
        "wall_s": wall,
    }
    write_json_atomic(out / "summary.json", summary)
    print("\n".join(lines[4 : 6 + len(results) + 1]))
    print(f"\n{auc_line}")
    print(f"report: {report} (total {wall:.0f} s)")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from choicebc.flags import add_dataclass_arguments

    add_dataclass_arguments(parser, QuickstartConfig)


def run(args: argparse.Namespace) -> int:
    from choicebc.demoset import check_output_path
    from choicebc.envs import get_task
    from choicebc.flags import dataclass_from_args
    from choicebc.sim.base import check_count

    cfg = dataclass_from_args(QuickstartConfig, args)
    try:  # cheap checks first: fail before minutes of collection and training
        for flag in ("episodes", "steps", "eval_episodes", "num_envs", "workers"):
            check_count(f"--{flag.replace('_', '-')}", getattr(cfg, flag))
        get_task(cfg.env_id)
        check_output_path(Path(cfg.out) / "report.md", overwrite=True, create_folder=True)
    except (ValueError, OSError) as exc:
        print(f"choicebc quickstart: {exc}", file=sys.stderr)
        return 2
    run_quickstart(cfg)
    return 0
