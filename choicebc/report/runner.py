"""Running the robustness report: every method × env × adversary × mix × corruption ratio × seed.

``choicebc report`` (and ``scripts/robustness_report.py``) trains and evaluates each method on
demonstrations corrupted by each adversary, and writes ``results/report.md`` with
normalized-score tables, corruption-detection ROC AUCs, return-vs-ratio plots and wall times.

The grid is thousands of cells (:mod:`choicebc.report.grid`), so:

* each finished cell is one small JSON, written atomically under the run folder; a re-run skips
  finished cells (never recomputes them) unless ``--force``;
* one demonstration set per (env, adversary, mix, ratio, seed) is collected once, cached on
  disk and shared by every method of that seed. At ratio 0 the adversary never acts, so the
  clean set (and its cells) is shared by every adversary and mix of the env;
* cells run in parallel local processes (``--workers``, one torch thread each) or as Ray tasks
  (``--ray-address``, extra ``choicebc[cluster]``; :mod:`choicebc.report.executors`). The
  driver writes every cell file, so only its machine needs the run folder; a Ray node that
  does not see the cached demo set collects its own copy (collection is deterministic in the
  seed);
* ``results/report.md`` is rendered from the run folder alone (``--render-only``;
  :mod:`choicebc.report.render`);
* the full grid's default run folder, ``docs/report/``, is part of the repository (its
  ``demos/`` is gitignored): the cell files are small, so committing them lets the grid grow
  over sessions and machines instead of starting again on every fresh clone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from choicebc.atomic import write_json_atomic
from choicebc.metrics import demo_roc_auc, roc_auc
from choicebc.report.executors import RayUnavailableError, make_pool
from choicebc.report.grid import (
    CELL_FORMAT,
    CELL_VERSION,
    Budget,
    Cell,
    ReportConfig,
    code_version,
    grid_cells,
    grid_dict,
    merge_grids,
    write_cell,
)
from choicebc.report.methods import METHODS, ReportError, demo_scores, train_method
from choicebc.report.render import render_report
from choicebc.threads import torch_threads

EVAL_SEED_OFFSET = 10_000
"""evaluation episodes start from seeds disjoint from the demonstrations' (seed + offset)"""


def collect_demos(
    env_id: str,
    expert: Any,
    adversary: str,
    ratio: float,
    mix: str,
    episodes: int,
    num_envs: int,
    seed: int,
    *,
    progress: bool = True,
    **env_kwargs: Any,
) -> Any:
    """Demonstrations of ``expert`` mixed with the ``adversary`` kind at ``ratio``.

    At ``ratio == 0`` no adversary is built (it would never act), so every adversary and mix
    yields the same clean set.
    """
    import choicebc as cb

    adv = cb.make_adversary(adversary, expert) if ratio > 0 else None
    return cb.collect(
        env_id,
        expert,
        adv,
        ratio=ratio,
        mix=mix if ratio > 0 else "step",
        episodes=episodes,
        num_envs=num_envs,
        seed=seed,
        progress=progress,
        **env_kwargs,
    )


def ensure_demos(cell: Cell, root: Path, budget: Budget) -> tuple[Path, float]:
    """Collect (once) and cache the demo set of ``cell``; returns its path and collection s.

    Collection is deterministic in the seed, so two processes racing on the same set write
    identical files (each atomically) and either result is correct.
    """
    import choicebc as cb

    path = cell.demo_path(root)
    meta = path.with_suffix(".json")
    wanted = {"episodes": budget.episodes, "num_envs": budget.num_envs}
    if path.is_file() and meta.is_file():
        cached = json.loads(meta.read_text())
        if cached.get("budget") == wanted:
            return path, float(cached["collect_s"])
    t0 = time.perf_counter()
    expert = cb.load_expert(cell.env_id)
    adversary = "flipped" if cell.ratio == 0 else cell.adversary
    demos = collect_demos(
        cell.env_id,
        expert,
        adversary,
        cell.ratio,
        cell.mix,
        episodes=budget.episodes,
        num_envs=budget.num_envs,
        seed=cell.seed,
        progress=False,
        nthread=1,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    demos.save(path, overwrite=True)
    seconds = time.perf_counter() - t0
    write_json_atomic(
        meta,
        {
            "collect_s": seconds,
            "transitions": int(demos.num_transitions),
            "corrupt_share": float(demos.is_corrupt.mean()),
            "budget": wanted,
        },
        indent=1,
    )
    return path, seconds


def run_cell(cell: Cell, root: str | Path, budget: Budget) -> dict[str, Any]:
    """Collect (if needed), train, evaluate and score one cell; returns its JSON record.

    Runs in a worker (one torch thread, one MuJoCo thread), so many run side by side.
    Run in this process (``--workers 1``), it leaves the caller's torch thread count as it was.
    """
    import torch  # noqa: F401 - imported first, so torch_threads has a torch to set

    with torch_threads(1):
        return _cell_record(cell, Path(root), budget)


def _cell_record(cell: Cell, root: Path, budget: Budget) -> dict[str, Any]:
    import choicebc as cb
    from choicebc.demoset import DemoSet

    t0, cpu0 = time.perf_counter(), time.process_time()
    demo_path, collect_s = ensure_demos(cell, root, budget)
    demos = DemoSet.load(demo_path)
    steps = budget.bcnd_steps if cell.method == "bcnd" else budget.steps
    t = time.perf_counter()
    policy = train_method(
        cell.method,
        demos,
        steps,
        cell.seed,
        bcnd_ensemble=budget.bcnd_ensemble,
        bcnd_rounds=budget.bcnd_rounds,
        ratio=cell.ratio,
    )
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    res = cb.evaluate(
        policy,  # a torch Module (BCPolicy or BCNDPolicy): its forward is the deterministic action
        cell.env_id,
        episodes=budget.eval_episodes,
        num_envs=budget.num_envs,
        seed=cell.seed + EVAL_SEED_OFFSET,
        nthread=1,
    )
    eval_s = time.perf_counter() - t
    auc, demo_auc, score_s = None, None, 0.0
    t = time.perf_counter()
    if METHODS[cell.method].scores and not METHODS[cell.method].top_by_return:
        auc = roc_auc(policy.data_quality(demos), demos.is_corrupt)
    ranking = demo_scores(cell.method, policy, demos)
    if ranking is not None:  # an episode is corrupt when the adversary drove most of it
        demo_auc = demo_roc_auc(ranking, demos.adversary_share)
    score_s = time.perf_counter() - t
    return {
        "format": CELL_FORMAT,
        "version": CELL_VERSION,
        "code_version": code_version(),
        "cell": asdict(cell),
        "budget": asdict(budget),
        "steps": steps,
        "normalized_score": res.normalized_score,
        "mean_return": res.mean_return,
        "std_return": res.std_return,
        "mean_length": res.mean_length,
        "eval_episodes": res.episodes,
        "eval_seed": res.seed,
        "unstable_episodes": int(res.unstable.sum()),
        "roc_auc": auc,
        "demo_roc_auc": demo_auc,
        # ChoiceNet's choice of mixture and what decided it (choice="auto": the likelihoods)
        "choice": getattr(policy, "choice", None),
        "choice_info": getattr(policy, "choice_info", None) or None,
        "transitions": int(demos.num_transitions),
        "corrupt_share": float(demos.is_corrupt.mean()),
        "timings": {
            "train_s": train_s,
            "eval_s": eval_s,
            "score_s": score_s,
            "total_s": time.perf_counter() - t0,
            # CPU seconds of this process: what the cell costs on an idle core, unlike the
            # wall times above, which stretch when other jobs share the machine
            "cpu_s": time.process_time() - cpu0,
            # the collection of the cell's demo set (cached: by the cell that collected it)
            "collect_s": collect_s,
        },
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _collect_task(cell: Cell, root: str, budget: Budget) -> float:
    """Collect the demo set of ``cell`` on one torch thread; returns the collection seconds."""
    import torch  # noqa: F401 - imported first, so torch_threads has a torch to set

    with torch_threads(1):
        return ensure_demos(cell, Path(root), budget)[1]


# Relative cost per cell (train steps dominate), so the longest cells start first.
def _cost(cell: Cell, budget: Budget) -> float:
    if cell.method == "bcnd":
        return budget.bcnd_steps * budget.bcnd_ensemble * budget.bcnd_rounds
    return budget.steps


def skipped_envs(envs: Iterable[str]) -> dict[str, str]:
    """env -> why it is skipped (no shipped expert: the message names the command)."""
    from choicebc.experts import shipped_experts

    shipped = set(shipped_experts())
    return {
        env: f"no shipped expert; train one with `choicebc expert train {env}` and copy its "
        f"best/ folder to demos/experts/{env}/"
        for env in envs
        if env not in shipped
    }


def run_cells(
    cells: list[Cell],
    root: Path,
    budget: Budget,
    pool: Any,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[Cell, str]]:
    """Run ``cells`` on ``pool``, writing each finished cell's JSON as it lands.

    Demo sets are collected first, one task per set; a set's cells are submitted as soon as
    it is on disk, longest cells first.

    Returns:
        The finished records and ``{cell: error message}`` of the cells that failed.
    """
    from tqdm.auto import tqdm

    by_demo: dict[str, list[Cell]] = {}
    for cell in cells:
        by_demo.setdefault(str(cell.demo_path(root)), []).append(cell)
    pending: dict[Any, tuple[str, Any]] = {}
    for key, group in by_demo.items():
        pending[pool.submit(_collect_task, group[0], str(root), budget)] = ("demos", key)
    records, failures = [], {}
    bar = tqdm(total=len(cells), desc="report cells", unit="cell", disable=not progress)
    try:
        while pending:
            done, _ = pool.wait_any(set(pending))
            for handle in done:
                kind, payload = pending.pop(handle)
                try:
                    value = pool.result(handle)
                except Exception as exc:  # noqa: BLE001 - one bad cell must not stop the grid
                    message = f"{type(exc).__name__}: {exc}"
                    group = by_demo[payload] if kind == "demos" else [payload]
                    for cell in group:
                        failures[cell] = message
                        tqdm.write(f"cell {cell} failed: {message}")
                    bar.update(len(group))
                    continue
                if kind == "demos":
                    group = sorted(by_demo[payload], key=lambda c: -_cost(c, budget))
                    for cell in group:
                        pending[pool.submit(run_cell, cell, str(root), budget)] = ("cell", cell)
                    continue
                write_cell(root, value)
                records.append(value)
                score = value["normalized_score"]
                bar.set_postfix_str(
                    f"{payload}: {'n/a' if score is None else f'{score:.1f}'}", refresh=False
                )
                bar.update(1)
    finally:
        bar.close()
    return records, failures


def run_report(cfg: ReportConfig) -> Path:
    """Run the missing cells of the grid (all with ``force``), then render the report.

    Returns:
        The path of the rendered markdown report.

    Raises:
        ReportError: bad settings, or finished cells in ``out`` made with another budget.
        RayUnavailableError: ``ray_address`` given without Ray installed.
    """
    cfg = cfg.resolved()
    cfg.validate()
    from choicebc.demoset import check_output_path

    try:  # before any cell runs: the figures folder sits beside the results file
        check_output_path(cfg.results, overwrite=True, create_folder=True)
    except OSError as exc:
        raise ReportError(str(exc)) from exc
    root = Path(cfg.out)
    if cfg.render_only:
        return render_report(root, cfg.results)
    methods = cfg.method_names()
    skipped = skipped_envs(cfg.envs)
    for env, why in skipped.items():
        print(f"skipping {env}: {why}", file=sys.stderr)
    envs = [e for e in cfg.envs if e not in skipped]
    grid = grid_dict(cfg, methods)
    grid["skipped_envs"] = skipped
    cells = grid_cells(envs, cfg.adversaries, cfg.mixes, cfg.ratios, cfg.seeds, methods)
    budget = cfg.budget
    todo, stale = [], 0
    for cell in cells:
        path = cell.path(root)
        if path.is_file() and not cfg.force:
            finished = json.loads(path.read_text())
            if finished.get("budget") != asdict(budget):
                raise ReportError(
                    f"{path} was made with budget {finished.get('budget')}, not "
                    f"{asdict(budget)}: use another --out for this budget, or --force to redo"
                )
            if finished.get("code_version") == code_version():
                continue
            stale += 1
            if not cfg.rerun_stale:
                continue
        todo.append(cell)
    try:
        saved = json.loads((root / "grid.json").read_text())
    except (OSError, ValueError):
        saved = None
    write_json_atomic(root / "grid.json", merge_grids(saved, grid), indent=1)
    print(f"{len(cells)} cells in the grid, {len(cells) - len(todo)} finished, {len(todo)} to run")
    if stale and not cfg.rerun_stale:
        print(
            f"{stale} finished cells came from other code than this ({code_version()}); "
            "--rerun-stale with the same settings recomputes them",
            file=sys.stderr,
        )
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    failures: dict[Cell, str] = {}
    records: list[dict[str, Any]] = []
    if todo:
        pool = make_pool(cfg)
        try:
            # absolute: Ray workers may run in another working directory
            records, failures = run_cells(todo, root.resolve(), budget, pool, progress=cfg.progress)
        finally:
            pool.close()
    wall = time.perf_counter() - t0
    with (root / "runs.jsonl").open("a") as f:
        entry = {
            "started": started.isoformat(timespec="seconds"),
            "wall_s": wall,
            "cells_run": len(records),
            "cells_failed": len(failures),
            "workers": cfg.workers or os.cpu_count(),
            "ray_address": cfg.ray_address or None,
        }
        f.write(json.dumps(entry) + "\n")
    report = render_report(root, cfg.results)
    print(f"{len(records)} cells run in {wall:.0f} s; report: {report}")
    if failures:
        print(f"{len(failures)} cells failed (re-run to retry):", file=sys.stderr)
        for cell, message in failures.items():
            print(f"  {cell}: {message}", file=sys.stderr)
    return report


# ------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from choicebc.flags import add_dataclass_arguments

    add_dataclass_arguments(parser, ReportConfig)


def run(args: argparse.Namespace) -> int:
    from choicebc.flags import dataclass_from_args

    cfg = dataclass_from_args(ReportConfig, args)
    try:
        run_report(cfg)
    except (ReportError, RayUnavailableError) as exc:
        print(f"choicebc report: {exc}", file=sys.stderr)
        return 2
    return 0
