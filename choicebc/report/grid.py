"""The report's grid and its cells: settings, budget, cell coordinates, cell files, code version.

The unit of work is a **cell** — one (env, adversary, mix, ratio, seed, method). Run folder
layout (``--out``)::

    grid.json                          the union of the grids run here, and their budget
    runs.jsonl                         one line per invocation: start, wall time, cells done
    demos/<env>/<tag>.h5 (+ .json)     cached demonstrations (+ collection time)
    cells/<env>/<tag>/<method>.json    one finished cell

with ``<tag>`` = ``clean-s<seed>`` at ratio 0, else ``<adversary>-<mix>-r<percent>-s<seed>``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from choicebc.atomic import write_json_atomic
from choicebc.report.methods import METHODS, BudgetFlags, ReportError, available_methods
from choicebc.version import __version__

CELL_FORMAT = "choicebc.report-cell"
CELL_VERSION = 1
RESULT_AFFECTING_EXCLUDE = (
    "cli.py",
    "demoset_cli.py",
    "evaluation_cli.py",
    "experts/cli.py",
    "flags.py",
    "plots.py",
    "quickstart.py",
    "report/render.py",
    "train_cli.py",
    "video.py",
    "bench/",
)
"""Source files (names relative to the package; a trailing ``/``: a folder) that cannot change
a cell's numbers: CLI wiring, figures, the report's rendering, the quickstart, benchmarks.
Every other source of the package and of its tasks (``choicebc.envs``) goes into
:func:`code_version`."""


@dataclass(frozen=True)
class Budget:
    """Everything besides the cell's coordinates that changes its numbers."""

    episodes: int = 100
    """demonstration episodes per demo set"""
    steps: int = 20_000
    """optimizer steps per BC policy"""
    bcnd_steps: int = 4_000
    """BCND optimizer steps per member per round"""
    bcnd_ensemble: int = 5
    bcnd_rounds: int = 3
    eval_episodes: int = 100
    """evaluation episodes per policy"""
    num_envs: int = 100
    """parallel simulations for collection and evaluation"""


@dataclass(frozen=True, order=True)
class Cell:
    """One (env, adversary, mix, ratio, seed, method). At ratio 0: adversary = mix = ``none``."""

    env_id: str
    adversary: str
    mix: str
    ratio: float
    seed: int
    method: str

    @property
    def demo_tag(self) -> str:
        if self.ratio == 0:
            return f"clean-s{self.seed}"
        return f"{self.adversary}-{self.mix}-r{round(self.ratio * 100):02d}-s{self.seed}"

    @property
    def env_folder(self) -> str:
        # ids like ``choicebc/PointReach-v0`` hold a "/": one folder level per cell env
        return self.env_id.replace("/", "__")

    def path(self, root: Path) -> Path:
        return root / "cells" / self.env_folder / self.demo_tag / f"{self.method}.json"

    def demo_path(self, root: Path) -> Path:
        return root / "demos" / self.env_folder / f"{self.demo_tag}.h5"

    def __str__(self) -> str:
        return f"{self.env_id}/{self.demo_tag}/{self.method}"


def make_cell(env_id, adversary, mix, ratio, seed, method) -> Cell:
    """A cell with the ratio-0 coordinates canonicalised (adversary and mix ``none``)."""
    ratio = float(ratio)
    if ratio == 0:
        adversary = mix = "none"
    return Cell(env_id, adversary, mix, ratio, int(seed), method)


def grid_cells(
    envs: Iterable[str],
    adversaries: Iterable[str],
    mixes: Iterable[str],
    ratios: Iterable[float],
    seeds: Iterable[int],
    methods: Iterable[str],
) -> list[Cell]:
    """Every distinct cell of the grid (ratio-0 cells once per env × seed × method)."""
    cells = {
        make_cell(e, a, x, r, s, m)
        for e in envs
        for a in adversaries
        for x in mixes
        for r in ratios
        for s in seeds
        for m in methods
    }
    return sorted(cells)


QUICK = {
    "envs": ("HalfCheetah-v5",),
    "adversaries": ("flipped",),
    "mixes": ("step",),
    "ratios": (0.0, 0.3, 0.5),
    "seeds": (0,),
    "methods": ("choicenet", "mse", "mdn", "gmm", "l1", "robust", "bcnd", "oracle"),
    "steps": 5_000,
    "bcnd_steps": 1_000,
    "out": "runs/report-quick",
    "results": "results/report-quick.md",
}
"""The ``--quick`` preset (fields the user left at their defaults take these values)."""


@dataclass
class ReportConfig(BudgetFlags):
    """Settings of ``choicebc report`` (the flags are generated from these; the budget flags
    it shares with ``choicebc quickstart`` come from :class:`BudgetFlags`)."""

    envs: tuple[str, ...] = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
    """tasks (those without a shipped expert are skipped and listed as missing)"""
    adversaries: tuple[str, ...] = ("flipped", "random", "noisy")
    """adversary kinds"""
    mixes: tuple[str, ...] = ("step", "episode")
    """mixing modes: step, episode (the grid's), or label (the expert drives and the recorded
    action is the adversary's: the paper's annotation-noise setting)"""
    ratios: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    """corruption ratios"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds (each: its own demo set, training and evaluation)"""
    methods: tuple[str, ...] = ()
    """methods (empty: every available one: choicenet choicenet_episode choicenet_auto mse mdn
    gmm l1 robust bcnd pbc oracle)"""
    bcnd_steps: int = 4_000
    """BCND optimizer steps per member per round (5 members x 3 rounds)"""
    out: str = "docs/report"
    """run folder: cached demos and one JSON per finished cell (the default one is in the
    repository, its demos/ gitignored, so the grid grows across machines and sessions)"""
    results: str = "results/report.md"
    """the rendered report (figures go beside it)"""
    workers: int = 0
    """parallel local worker processes (0: one per core; 1: run in this process)"""
    ray_address: str = ""
    """run the cells as Ray tasks on this cluster ('auto', 'ray://host:10001', or 'local')"""
    quick: bool = False
    """preset: HalfCheetah-v5, flipped, step, ratios 0/0.3/0.5, seed 0, 5k steps: 24 cells"""
    force: bool = False
    """recompute cells that are already finished (cached demo sets are reused)"""
    rerun_stale: bool = False
    """recompute finished cells whose recorded code version differs from this code's (by
    default they are kept, and the run says how many there are)"""
    render_only: bool = False
    """only regenerate the report from the cell JSONs"""
    progress: bool = True
    """progress bar over cells"""

    def resolved(self) -> ReportConfig:
        """This config with the ``--quick`` preset applied to fields left at their defaults."""
        if not self.quick:
            return self
        defaults = ReportConfig()
        changes = {k: v for k, v in QUICK.items() if getattr(self, k) == getattr(defaults, k)}
        return replace(self, quick=False, **changes)

    @property
    def budget(self) -> Budget:
        return Budget(
            episodes=self.episodes,
            steps=self.steps,
            bcnd_steps=self.bcnd_steps,
            eval_episodes=self.eval_episodes,
            num_envs=self.num_envs,
        )

    def method_names(self) -> list[str]:
        """The requested methods (validated), or every available one; oracle always included."""
        available = available_methods()
        if not self.methods:
            return available
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ReportError(f"unknown methods {unknown}; choose from {list(METHODS)}")
        missing = [m for m in self.methods if m not in available]
        if missing:
            raise ReportError(f"methods {missing} are not installed here (available: {available})")
        names = [m for m in METHODS if m in self.methods or m == "oracle"]
        return names

    def validate(self) -> None:
        from choicebc.adversaries import KINDS

        for r in self.ratios:
            if not 0.0 <= r <= 1.0:
                raise ReportError(f"ratio {r} is outside [0, 1]")
        for a in self.adversaries:
            if a not in KINDS:
                raise ReportError(f"unknown adversary {a!r}; choose from {list(KINDS)}")
        from choicebc.collect import MIXES

        for m in self.mixes:
            if m not in MIXES:
                raise ReportError(f"mix must be one of {list(MIXES)}, got {m!r}")
        for name in ("episodes", "steps", "bcnd_steps", "eval_episodes", "num_envs"):
            if getattr(self, name) < 1:
                raise ReportError(f"--{name.replace('_', '-')} must be >= 1")
        if self.workers < 0:
            raise ReportError("--workers must be >= 0 (0: one per core)")
        if not self.seeds:
            raise ReportError("give at least one seed")


def source_files(package: Path, envs: Path) -> dict[str, Path]:
    """Name -> path of every source file that shapes a cell's numbers.

    Args:
        package: the folder of the ``choicebc`` package.
        envs: the folder of ``choicebc.envs``, the task code: inside ``package`` in a wheel,
            the repository's top-level ``envs/`` in an editable install.

    Names are relative to the package, task files under ``envs/``, so the same sources give
    the same names in either layout; :data:`RESULT_AFFECTING_EXCLUDE` is left out.
    """
    files: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        # the package's envs/ and demos/ (a folder in a wheel, a link in the repository) are
        # not its own code: the tasks are read from ``envs``, demos/ holds no code
        if rel.split("/")[0] not in ("envs", "demos"):
            files[rel] = path
    for path in sorted(envs.rglob("*.py")):
        files["envs/" + path.relative_to(envs).as_posix()] = path
    return {
        rel: path
        for rel, path in sorted(files.items())
        if not any(
            rel.startswith(x) if x.endswith("/") else rel == x for x in RESULT_AFFECTING_EXCLUDE
        )
    }


def result_affecting_files() -> dict[str, Path]:
    """:func:`source_files` of the installed ``choicebc`` and ``choicebc.envs``."""
    spec = importlib.util.find_spec("choicebc.envs")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("choicebc.envs is not installed: reinstall choicebc (pip install -e .)")
    envs = Path(next(iter(spec.submodule_search_locations)))
    return source_files(Path(importlib.util.find_spec("choicebc").origin).parent, envs)


def hash_sources(files: dict[str, Path]) -> str:
    """12 hex digits of SHA-256 over every ``(name, bytes)`` of ``files``, in name order."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + files[rel].read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.cache
def code_version() -> str:
    """``"<choicebc version>+<12 hex>"``: a hash of the source files that shape a cell's
    numbers (:func:`result_affecting_files`: the package and its tasks, not its figures, CLI or
    rendering). Cells record it, so a grid resumed after a code change can tell which cells
    came from older code (``--rerun-stale`` recomputes them)."""
    return f"{__version__}+{hash_sources(result_affecting_files())}"


def grid_dict(cfg: ReportConfig, methods: list[str]) -> dict[str, Any]:
    return {
        "envs": list(cfg.envs),
        "adversaries": list(cfg.adversaries),
        "mixes": list(cfg.mixes),
        "ratios": list(cfg.ratios),
        "seeds": list(cfg.seeds),
        "methods": methods,
        "budget": asdict(cfg.budget),
    }


def merge_grids(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` widened by the axes of ``old`` (a folder's grid grows run by run).

    ``old`` is the folder's saved ``grid.json`` (anything unreadable or of another budget is
    ignored); each axis keeps ``old``'s order, then ``new``'s values it lacked. An env skipped in
    one run but run in another is not skipped.
    """
    if not isinstance(old, dict) or old.get("budget") != new.get("budget"):
        return new
    merged = dict(new)
    for key in ("envs", "adversaries", "mixes", "ratios", "seeds", "methods"):
        before = old.get(key)
        values = list(before) if isinstance(before, list) else []
        merged[key] = values + [v for v in new[key] if v not in values]
    skipped = {**dict(old.get("skipped_envs") or {}), **dict(new.get("skipped_envs") or {})}
    ran = set(new["envs"]) - set(new.get("skipped_envs") or {})
    merged["skipped_envs"] = {env: why for env, why in skipped.items() if env not in ran}
    return merged


def write_cell(root: Path, record: dict[str, Any]) -> Path:
    """Write a finished cell's record to its file under ``root`` (atomically); returns it."""
    return write_json_atomic(cell_of(record).path(root), record, indent=1)


def read_cells(root: str | Path) -> list[dict[str, Any]]:
    """Every finished cell JSON under ``root/cells`` (unreadable files are skipped, named)."""
    cells = []
    for path in sorted(Path(root, "cells").glob("*/*/*.json")):  # env/tag/method.json
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            if data.get("format") == CELL_FORMAT:
                cell_of(data)  # the fields the render reads
                cells.append(data)
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
            # ValueError: also UnicodeDecodeError and JSONDecodeError
            print(f"skipping unreadable cell {path}: {exc!r}", file=sys.stderr)
    return cells


def cell_of(record: dict[str, Any]) -> Cell:
    c = record["cell"]
    return make_cell(c["env_id"], c["adversary"], c["mix"], c["ratio"], c["seed"], c["method"])
