"""Rendering of the robustness report: headline, tables, ROC AUCs, plots, wall times, missing
cells, code versions.

The markdown is a function of the run folder's committed files alone — the cell JSONs,
``grid.json`` and ``runs.jsonl`` — not of the machine, the clock or the running code, so
``docs/results.md`` changes only when its cells do. Kept out of
:func:`choicebc.report.grid.code_version`: a change to a table or a figure does not mark
finished cells as stale.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.atomic import write_text_atomic
from choicebc.report.grid import Cell, cell_of, grid_cells, make_cell, read_cells
from choicebc.report.methods import METHODS, ReportError


def _fmt_mean_std(values: list[float], digits: int = 1, seeds: int = 1) -> str:
    """``mean ± std`` of ``values``, marked ``(n=k)`` when fewer than ``seeds`` seeds have run."""
    if not values:
        return "—"
    text = (
        f"{values[0]:.{digits}f}"
        if len(values) == 1
        else f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"
    )
    return text if len(values) >= seeds else f"{text} (n={len(values)})"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.0f} %"


def _thousands(value: Any) -> str:
    """``20,000`` for a number, ``?`` when the budget does not say."""
    return f"{value:,}" if isinstance(value, int | float) else "?"


def _read_json(path: Path, lines: bool = False) -> Any:
    """A JSON file's value (``lines``: the list of its lines' values, a line that is not JSON
    skipped with a warning naming it: a run killed while appending leaves at most one); ``None``,
    with a warning naming the file, when it is not UTF-8 JSON — one damaged file never aborts
    the render."""
    try:
        text = path.read_bytes().decode("utf-8")
        if not lines:
            return json.loads(text)
    except (OSError, ValueError) as exc:  # ValueError: UnicodeDecodeError, JSONDecodeError
        print(f"skipping unreadable {path}: {exc}", file=sys.stderr)
        return None
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except ValueError as exc:
            print(f"skipping unreadable line {number} of {path}: {exc}", file=sys.stderr)
    return values


def _load_grid(root: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's grid from ``grid.json``, widened by whatever cells are on disk."""
    path = root / "grid.json"
    saved = _read_json(path) if path.is_file() else None
    grid = saved if isinstance(saved, dict) else {}
    grid.setdefault("skipped_envs", {})
    keys = {"envs": "env_id", "adversaries": "adversary", "mixes": "mix", "ratios": "ratio"}
    for key, field_name in keys.items():
        values = list(grid.get(key, []))
        for r in records:
            v = r["cell"][field_name]
            if v not in values and v != "none":
                values.append(v)
        grid[key] = values
    seeds = set(grid.get("seeds", [])) | {r["cell"]["seed"] for r in records}
    grid["seeds"] = sorted(seeds)
    present = {r["cell"]["method"] for r in records} | set(grid.get("methods", []))
    grid["methods"] = [m for m in METHODS if m in present or m == "oracle"]
    grid["ratios"] = sorted(set(grid["ratios"]))
    return grid


def _index(records: list[dict[str, Any]]) -> dict[Cell, dict[str, Any]]:
    return {cell_of(r): r for r in records}


def _values(index, env, adv, mix, ratio, method, seeds, key) -> list[float]:
    out = []
    for seed in seeds:
        rec = index.get(make_cell(env, adv, mix, ratio, seed, method))
        if rec is not None and rec.get(key) is not None:
            out.append(float(rec[key]))
    return out


HEADLINE_ENV = "HalfCheetah-v5"
HEADLINE_SETTINGS = (("step", 0.2), ("step", 0.4), ("episode", 0.2), ("episode", 0.4))
"""The headline's cells: flipped adversary, seed 0, these (mix, ratio) on :data:`HEADLINE_ENV`."""


def headline_table(records: list[dict[str, Any]]) -> str:
    """ChoiceNet-BC vs the best reward-free peer vs the oracle, as markdown (caption + table).

    One row per (mix, ratio) of :data:`HEADLINE_SETTINGS`, on :data:`HEADLINE_ENV` with the
    flipped adversary, seed 0: each cell's normalized score, ``—`` where it has not run.
    ChoiceNet-BC is ``choicenet_auto`` where its cell exists, else ``choicenet``; the peer is
    the highest-scoring other method that reads neither the ground-truth labels (the oracle)
    nor rewards (%BC), ChoiceNet variants excluded, named beside its score.
    """
    index = _index(records)

    def score(mix: str, ratio: float, method: str) -> float | None:
        rec = index.get(make_cell(HEADLINE_ENV, "flipped", mix, ratio, 0, method))
        value = None if rec is None else rec.get("normalized_score")
        return None if value is None else float(value)

    peers = [
        m
        for m, spec in METHODS.items()
        if m != "oracle" and not spec.uses_rewards and spec.head != "choicenet"
    ]
    lines = [
        f"Normalized score (expert = 100) on {HEADLINE_ENV}, flipped adversary, seed 0. "
        "ChoiceNet-BC: the mixture choice picked per dataset (`choicenet_auto`, `train_bc`'s "
        "default; `choicenet`, one choice per step, where that cell has not run). Best peer: "
        "the highest-scoring of "
        + ", ".join(METHODS[m].label for m in peers)
        + "; %BC reads rewards and is left out. Oracle: MSE-BC on the clean steps only.",
        "",
        "| mixing | corrupt | ChoiceNet-BC | best reward-free peer | oracle |",
        "|---|---:|---:|---:|---:|",
    ]
    for mix, ratio in HEADLINE_SETTINGS:
        ours = next(
            (
                (m, v)
                for m in ("choicenet_auto", "choicenet")
                if (v := score(mix, ratio, m)) is not None
            ),
            None,
        )
        scored = [(v, m) for m in peers if (v := score(mix, ratio, m)) is not None]
        best = max(scored, key=lambda vm: vm[0], default=None)  # first in table order on ties
        oracle = score(mix, ratio, "oracle")
        row = [
            f"{mix}",
            _pct(ratio),
            "—" if ours is None else f"{ours[1]:.1f} ({METHODS[ours[0]].choice})",
            "—" if best is None else f"{best[0]:.1f} ({METHODS[best[1]].label})",
            "—" if oracle is None else f"{oracle:.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _headline_section(records: list[dict[str, Any]]) -> list[str]:
    return ["## Headline", "", *headline_table(records).splitlines(), ""]


def render_report(root: str | Path, results: str | Path, figures: bool = True) -> Path:
    """Write the markdown report (and its figures) from the cell JSONs under ``root``.

    Args:
        root: the run folder (its ``cells/``, ``grid.json`` and ``runs.jsonl`` are read).
        results: the markdown file to write.
        figures: draw the figures; ``False`` writes the same markdown (figure links included)
            without drawing them.

    Returns:
        The markdown path. Figures go to ``<results stem>_figures/`` beside it.
    """
    root, results = Path(root), Path(results)
    records = read_cells(root)
    if not records and not (root / "grid.json").is_file():
        raise ReportError(
            f"nothing to render in {root}: it holds no grid.json and no cell files. --out "
            "names the run folder (the full grid's is docs/report), --results the markdown"
        )
    grid = _load_grid(root, records)
    index = _index(records)
    seeds, methods, ratios = grid["seeds"], grid["methods"], grid["ratios"]
    envs = [e for e in grid["envs"] if e not in grid["skipped_envs"]]
    budget = grid.get("budget") or (records[0]["budget"] if records else {})
    fig_dir = results.with_name(results.stem + "_figures")
    finished = max((str(r.get("finished", "")) for r in records), default="")
    lines = [
        "# Robustness report",
        "",
        *_headline_section(records),
        "## All results",
        "",
        "Normalized score (0 = random policy, 100 = the shipped expert's card; D4RL "
        f"convention), mean ± std over seeds {seeds}; (n=k): only k of them have run; "
        f"{budget.get('eval_episodes', '?')} evaluation episodes per policy. Demonstrations: "
        f"{budget.get('episodes', '?')} episodes per set; {_thousands(budget.get('steps'))} "
        f"optimizer steps per BC policy; BCND {budget.get('bcnd_ensemble', '?')} members × "
        f"{budget.get('bcnd_rounds', '?')} rounds × {_thousands(budget.get('bcnd_steps'))} steps. "
        "**Bold**: the best non-oracle method in the column.",
        "",
        f"Generated from {len(records)} cell files in `{root}`"
        + (f" (the newest finished {finished})" if finished else "")
        + f": `choicebc report --render-only --out {root} --results {results}`.",
        "",
    ]
    if not records:
        lines += ["No finished cells yet.", ""]
    for env in envs:
        lines += [f"## {env}", ""]
        for adv in grid["adversaries"]:
            for mix in grid["mixes"]:
                lines += _score_table(index, env, adv, mix, ratios, methods, seeds)
        png = _plot_env(index, env, grid, fig_dir, draw=figures)
        if png is not None:
            rel = os.path.relpath(png, results.parent)
            lines += [f"![{env}: normalized score vs corruption ratio]({rel})", ""]
    lines += _auc_section(index, envs, grid, seeds)
    lines += _method_notes(methods)
    lines += _wall_time_section(root, records)
    lines += _missing_section(index, grid, envs)
    lines += _code_version_section(records)
    return write_text_atomic(results, "\n".join(lines) + "\n")


def _code_version_section(records: list[dict[str, Any]]) -> list[str]:
    """The code versions the cells came from, and how many cells each (most first)."""
    if not records:
        return []
    counts: dict[str, int] = {}
    for r in records:
        v = r.get("code_version", "unrecorded")
        counts[v] = counts.get(v, 0) + 1
    lines = [
        "## Code versions",
        "",
        "Each cell records the version of the code that made it (`choicebc` version + a hash of "
        "the sources that shape its numbers); `choicebc report --rerun-stale` with the same "
        "settings recomputes the cells made by other code than the one running it.",
        "",
    ]
    lines += [
        f"- `{v}`: {n} cells" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return lines + [""]


def score_table_rows(index, env, adv, mix, ratios, methods, seeds) -> dict[str, list[str]]:
    """method -> formatted ``mean ± std`` normalized score per ratio (``—``: no cell)."""
    rows = {}
    for m in methods:
        rows[m] = [
            _fmt_mean_std(
                _values(index, env, adv, mix, r, m, seeds, "normalized_score"), seeds=len(seeds)
            )
            for r in ratios
        ]
    return rows


def _score_table(index, env, adv, mix, ratios, methods, seeds) -> list[str]:
    rows = score_table_rows(index, env, adv, mix, ratios, methods, seeds)
    means = {
        m: [
            np.mean(v)
            if (v := _values(index, env, adv, mix, r, m, seeds, "normalized_score"))
            else -math.inf
            for r in ratios
        ]
        for m in methods
    }
    lines = [
        f"### {env} — {adv} adversary, {mix} mixing",
        "",
        "| method | " + " | ".join(_pct(r) for r in ratios) + " |",
        "|---|" + "---:|" * len(ratios),
    ]
    for m in methods:
        cells = []
        for j, text in enumerate(rows[m]):
            # bold: the best method that reads neither labels (oracle) nor rewards (%BC)
            peers = [o for o in methods if o != "oracle" and not METHODS[o].uses_rewards]
            best = max((means[o][j] for o in peers), default=-math.inf)
            bold = m in peers and means[m][j] == best and best > -math.inf
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {METHODS[m].label} | " + " | ".join(cells) + " |")
    return lines + [""]


def _auc_section(index, envs, grid, seeds) -> list[str]:
    scoring = [m for m in grid["methods"] if m in METHODS and METHODS[m].scores]
    ratios = [r for r in grid["ratios"] if r > 0]
    if not scoring or not ratios:
        return []
    lines = [
        "## Corruption detection",
        "",
        "ROC AUC of each method's `data_quality` score (posterior that a step came from the "
        "target demonstrator) against the ground-truth `is_corrupt` labels of its training "
        "demonstrations; mean ± std over seeds. 0.5 = chance, 1.0 = every corrupt step ranked "
        "below every clean one. (No AUC at 0 %: there is nothing to find.) With episode "
        "mixing the AUC is per episode: each method's ranking of whole demonstrations "
        "(`demo_quality`; the episode mean of `data_quality` for BCND; the return for %BC) "
        "against the episodes the adversary drove.",
        "",
    ]
    for env in envs:
        for adv in grid["adversaries"]:
            for mix in grid["mixes"]:
                key = "demo_roc_auc" if mix == "episode" else "roc_auc"
                per = "per-episode ROC AUC" if mix == "episode" else "ROC AUC"
                lines += [
                    f"### {env} — {adv} adversary, {mix} mixing ({per})",
                    "",
                    "| method | " + " | ".join(_pct(r) for r in ratios) + " |",
                    "|---|" + "---:|" * len(ratios),
                ]
                for m in scoring:
                    if key == "roc_auc" and METHODS[m].top_by_return:
                        continue  # %BC ranks whole episodes only
                    vals = [
                        _fmt_mean_std(
                            _values(index, env, adv, mix, r, m, seeds, key), 3, len(seeds)
                        )
                        for r in ratios
                    ]
                    lines.append(f"| {METHODS[m].label} | " + " | ".join(vals) + " |")
                lines.append("")
    return lines


def _method_notes(methods: list[str]) -> list[str]:
    lines = ["## Methods", ""]
    for m in methods:
        lines.append(f"- **{METHODS[m].label}** (`{m}`): {METHODS[m].reference}.")
    return lines + [""]


def _wall_time_section(root: Path, records: list[dict[str, Any]]) -> list[str]:
    lines = ["## Wall time", ""]
    runs_path = root / "runs.jsonl"
    if runs_path.is_file():
        runs = [r for r in _read_json(runs_path, lines=True) or [] if isinstance(r, dict)]
        lines += ["| run started (UTC) | cells run | failed | workers | wall time |"]
        lines += ["|---|---:|---:|---|---:|"]
        for r in runs:
            where = f"Ray {r['ray_address']}" if r.get("ray_address") else str(r["workers"])
            lines.append(
                f"| {r['started']} | {r['cells_run']} | {r['cells_failed']} | {where} | "
                f"{r['wall_s']:.0f} s |"
            )
        total = sum(r["wall_s"] for r in runs if r["cells_run"])
        lines += ["", f"Total wall time of the runs that computed cells: {total:.0f} s.", ""]
    # one collection per demo set: cells sharing a set record the same seconds
    sets = {
        (r["cell"]["env_id"], cell_of(r).demo_tag): r["timings"]["collect_s"]
        for r in records
        if isinstance(r["timings"].get("collect_s"), int | float)
    }
    collect = list(sets.values())
    if collect:
        lines += [
            f"Demonstration collection: {len(collect)} sets, {sum(collect):.0f} s in all "
            f"({np.mean(collect):.0f} s per set, one MuJoCo thread).",
            "",
        ]
    if not records:
        return lines
    lines += [
        "Per cell (one worker process, one thread; train + evaluate + score, demos excluded):",
        "",
        "| method | cells | train s / cell | evaluate s / cell | total s / cell | sum |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    by_method: dict[str, list[dict[str, float]]] = {}
    for r in records:
        by_method.setdefault(r["cell"]["method"], []).append(r["timings"])
    for m in METHODS:
        if m not in by_method:
            continue
        t = by_method[m]
        lines.append(
            f"| {METHODS[m].label} | {len(t)} | {np.mean([x['train_s'] for x in t]):.0f} | "
            f"{np.mean([x['eval_s'] for x in t]):.0f} | {np.mean([x['total_s'] for x in t]):.0f}"
            f" | {sum(x['total_s'] for x in t):.0f} s |"
        )
    total = sum(r["timings"]["total_s"] for r in records)
    lines += ["", f"Sum over all cells: {total:.0f} s (worker time; runs overlap on the cores)."]
    cpu = [r["timings"]["cpu_s"] for r in records if "cpu_s" in r["timings"]]
    if cpu:
        lines.append(
            f"CPU time of {len(cpu)} cells: {sum(cpu):.0f} s — the load-independent cost "
            "(the wall time of one idle core)."
        )
    lines.append("")
    lines += ["<details><summary>wall time of every cell</summary>", ""]
    lines += ["| cell | train s | evaluate s | total s |", "|---|---:|---:|---:|"]
    for r in sorted(records, key=lambda r: str(cell_of(r))):
        t = r["timings"]
        lines.append(
            f"| {cell_of(r)} | {t['train_s']:.0f} | {t['eval_s']:.0f} | {t['total_s']:.0f} |"
        )
    return lines + ["", "</details>", ""]


def missing_cells(index, grid, envs) -> list[Cell]:
    """Cells of the grid (skipped envs included) that have no finished JSON."""
    all_envs = list(envs) + [e for e in grid["envs"] if e in grid["skipped_envs"]]
    cells = grid_cells(
        all_envs, grid["adversaries"], grid["mixes"], grid["ratios"], grid["seeds"], grid["methods"]
    )
    return [c for c in cells if c not in index]


def _missing_section(index, grid, envs) -> list[str]:
    missing = missing_cells(index, grid, envs)
    lines = ["## Missing cells", ""]
    if not missing:
        return lines + ["None: every cell of the grid is finished.", ""]
    lines.append(f"{len(missing)} cells of the grid have no result yet:")
    lines.append("")
    for env, why in grid["skipped_envs"].items():
        n = sum(c.env_id == env for c in missing)
        lines.append(f"- **{env}**: all {n} cells — {why}.")
    rest = [c for c in missing if c.env_id not in grid["skipped_envs"]]
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for c in rest:
        groups.setdefault((c.env_id, c.adversary, c.mix), []).append(c)
    for (env, adv, mix), group in groups.items():
        where = "clean (0 %)" if adv == "none" else f"{adv} adversary, {mix} mixing"
        names = ", ".join(f"{_pct(c.ratio)} s{c.seed} {c.method}" for c in group[:12])
        more = f" and {len(group) - 12} more" if len(group) > 12 else ""
        lines.append(f"- {env}, {where}: {len(group)} cells not run yet ({names}{more}).")
    return lines + [""]


def _plot_env(index, env, grid, fig_dir: Path, draw: bool = True) -> Path | None:
    """Normalized score vs ratio, one panel per (adversary, mix), one line per method.

    Returns the PNG's path (``None``: no cell to plot); ``draw=False`` returns it undrawn.
    """
    combos = [(a, x) for a in grid["adversaries"] for x in grid["mixes"]]
    seeds, ratios = grid["seeds"], grid["ratios"]
    combos = [
        (a, x)
        for a, x in combos
        if any(
            index.get(make_cell(env, a, x, r, s, m)) is not None and r > 0
            for r in ratios
            for s in seeds
            for m in grid["methods"]
        )
    ]
    if not combos:
        return None
    png = fig_dir / f"{env.replace('/', '__')}.png"
    if not draw:
        return png
    from choicebc.plots import plt, save_figure

    ncols = min(len(combos), 3)
    nrows = math.ceil(len(combos) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False, sharey=True
    )
    colors = plt.get_cmap("tab10")
    for k, (adv, mix) in enumerate(combos):
        ax = axes[k // ncols][k % ncols]
        for j, m in enumerate(grid["methods"]):
            xs, mean, std = [], [], []
            for r in ratios:
                v = _values(index, env, adv, mix, r, m, seeds, "normalized_score")
                if v:
                    xs.append(100 * r)
                    mean.append(np.mean(v))
                    std.append(np.std(v))
            if not xs:
                continue
            xs, mean, std = np.array(xs), np.array(mean), np.array(std)
            oracle = m == "oracle"
            color = "black" if oracle else colors(j % 10)
            style = "--" if oracle else "-"
            ax.plot(xs, mean, style, marker="o", ms=4, color=color, label=METHODS[m].label)
            ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        ax.axhline(100, color="grey", lw=0.8, ls=":")
        ax.set(
            title=f"{adv} adversary, {mix} mixing",
            xlabel="corrupt share of the demonstrations (%)",
        )
        ax.grid(alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("normalized score (expert = 100)")
    for k in range(len(combos), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    # outside the panels: inside, it hides the lines that collapse to the bottom at high ratios
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    band = "± std over seeds" if len(seeds) > 1 else "one seed"
    fig.suptitle(f"{env}: robustness to corrupted demonstrations ({band})")
    fig.tight_layout()
    return save_figure(fig, png)
