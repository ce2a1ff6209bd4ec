"""The robustness report: every method × env × adversary × mix × corruption ratio × seed.

``choicebc report`` (and ``scripts/robustness_report.py``) trains and evaluates each method on
demonstrations corrupted by each adversary, and writes ``results/report.md`` with
normalized-score tables, corruption-detection ROC AUCs, return-vs-ratio plots and wall times.

The unit of work is a **cell** — one (env, adversary, mix, ratio, seed, method). The grid is
thousands of cells, so:

* each finished cell is one small JSON, written atomically under the run folder; a re-run skips
  finished cells (never recomputes them) unless ``--force``;
* one demonstration set per (env, adversary, mix, ratio, seed) is collected once, cached on
  disk and shared by every method of that seed. At ratio 0 the adversary never acts, so the
  clean set (and its cells) is shared by every adversary and mix of the env;
* cells run in parallel local processes (``--workers``, one torch thread each) or as Ray tasks
  (``--ray-address``, extra ``choicebc[cluster]``). The driver writes every cell file, so only
  its machine needs the run folder; a Ray node that does not see the cached demo set collects
  its own copy (collection is deterministic in the seed);
* ``results/report.md`` is rendered from the cell JSONs alone (``--render-only``);
* the full grid's default run folder, ``docs/report/``, is part of the repository (its
  ``demos/`` is gitignored): the cell files are small, so committing them lets the grid grow
  over sessions and machines instead of starting again on every fresh clone.

Run folder layout (``--out``)::

    grid.json                          the grid and budget of the last run (for --render-only)
    runs.jsonl                         one line per invocation: start, wall time, cells done
    demos/<env>/<tag>.h5 (+ .json)     cached demonstrations (+ collection time)
    cells/<env>/<tag>/<method>.json    one finished cell

with ``<tag>`` = ``clean-s<seed>`` at ratio 0, else ``<adversary>-<mix>-r<percent>-s<seed>``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

CELL_FORMAT = "choicebc.report-cell"
CELL_VERSION = 1
RESULT_AFFECTING_EXCLUDE = (
    "plots.py",
    "cli.py",
    "video.py",
    "quickstart.py",
    "demoset_cli.py",
    "report_render.py",
)
"""choicebc modules that cannot change a cell's numbers (figures, CLI wiring); everything else
in the package -- heads, training, simulation, envs, collection, this module's cell code --
goes into :func:`code_version`."""
EVAL_SEED_OFFSET = 10_000
"""evaluation episodes start from seeds disjoint from the demonstrations' (seed + offset)"""


class ReportError(ValueError):
    """A report setting or run folder a user must fix (the message says how)."""


class RayUnavailableError(ImportError):
    """``--ray-address`` was given but Ray is not installed."""


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """One method of the report.

    Attributes:
        name: key in cell files and on the command line.
        label: row label in the tables.
        head: ``choicebc.heads`` head of the BC policy (``None`` for BCND).
        clean_only: train on the ground-truth clean steps only (the oracle).
        scores: the policy's ``data_quality`` ranks corrupt steps (ROC AUC is reported).
        reference: where the method comes from (printed under the tables).
        choice: ChoiceNet's choice of mixture (``step``, ``episode``, ``auto``; see
            :mod:`choicebc.choice`), ``None`` for other heads.
        uses_rewards: the method reads the demonstrations' rewards, which real teleoperation
            data usually lack (marked in the tables, never bold).
        top_by_return: train on the top ``1 - ratio`` share of the episodes by return (%BC).
    """

    name: str
    label: str
    head: str | None
    clean_only: bool = False
    scores: bool = False
    reference: str = ""
    choice: str | None = None
    uses_rewards: bool = False
    top_by_return: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "choicenet",
            "ChoiceNet-BC",
            "choicenet",
            scores=True,
            reference="Choi et al., ChoiceNet (2018): Cholesky-block mixture of correlated means; "
            "one choice of mixture per step (eq. (6))",
            choice="step",
        ),
        Method(
            "choicenet_episode",
            "ChoiceNet-BC (episode)",
            "choicenet",
            scores=True,
            reference="ChoiceNet with one choice of mixture per demonstration (choicebc.choice)",
            choice="episode",
        ),
        Method(
            "choicenet_auto",
            "ChoiceNet-BC (auto)",
            "choicenet",
            scores=True,
            reference="ChoiceNet with the choice picked per dataset (train_bc's default)",
            choice="auto",
        ),
        Method("mse", "MSE-BC", "mse", reference="plain behaviour cloning, squared error"),
        Method(
            "mdn",
            "MDN-BC",
            "mdn",
            scores=True,
            reference="Bishop (1994) mixture density network, K=5 diagonal Gaussians",
        ),
        Method(
            "gmm",
            "GMM-BC (robomimic)",
            "gmm",
            scores=True,
            reference="Mandlekar et al., robomimic (CoRL 2021) BC-GMM: 5 modes, softplus std",
        ),
        Method("l1", "L1-BC", "l1", reference="absolute-error BC (median regression)"),
        Method(
            "robust",
            "Tukey-BC",
            "robust",
            reference="Tukey biweight robust loss (Beaton & Tukey 1974)",
        ),
        Method(
            "bcnd",
            "BCND",
            None,
            scores=True,
            reference="Sasaki & Yamashina, ICLR 2021: ensemble reweighted by its own likelihood",
        ),
        Method(
            "pbc",
            "%BC (uses rewards)",
            "mse",
            scores=True,
            reference="MSE-BC on the top (1 - ratio) episodes by return (Chen et al., Decision "
            "Transformer, 2021): needs rewards",
            uses_rewards=True,
            top_by_return=True,
        ),
        Method(
            "oracle",
            "Oracle MSE-BC (clean steps only)",
            "mse",
            clean_only=True,
            reference="MSE-BC on the ground-truth clean steps only: the ceiling",
        ),
    )
}


def available_methods() -> list[str]:
    """Methods whose implementation is importable here, in table order.

    ``gmm`` needs the head registered in :data:`choicebc.heads.HEADS`; ``bcnd`` needs
    :mod:`choicebc.bcnd`.
    """
    from choicebc.heads import HEADS

    names = []
    for name, method in METHODS.items():
        if method.head is not None and method.head not in HEADS:
            continue
        if name == "bcnd" and not _bcnd_available():
            continue
        names.append(name)
    return names


def _bcnd_available() -> bool:
    try:
        from choicebc.bcnd import train_bcnd  # noqa: F401
    except ImportError:
        return False
    return True


def train_method(
    method: str,
    demos: Any,
    steps: int,
    seed: int,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    bcnd_ensemble: int = 5,
    bcnd_rounds: int = 3,
    ratio: float = 0.0,
) -> Any:
    """Train one report method on ``demos``; returns a policy with ``act`` and ``data_quality``.

    Args:
        method: a key of :data:`METHODS`.
        demos: a ``DemoSet`` (ground-truth ``is_corrupt`` needed for the oracle).
        steps: optimizer steps (BCND: per member per round, ``ensemble * rounds`` runs).
        seed: training seed.
        out: ``train_bc`` run folder (logs, checkpoints, ``policy/``); ``None``: in memory.
        progress: show the training progress bar.
        bcnd_ensemble, bcnd_rounds: BCND's ensemble size and number of rounds.
        ratio: the corruption ratio the set was collected with (%BC keeps the top
            ``1 - ratio`` of the episodes by return).

    Raises:
        ReportError: unknown method, or one whose implementation is not installed.
    """
    if method not in METHODS:
        raise ReportError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    spec = METHODS[method]
    if method == "bcnd":
        if not _bcnd_available():
            raise ReportError("method 'bcnd' needs choicebc.bcnd, which is not installed here")
        from choicebc.bcnd import train_bcnd

        return train_bcnd(
            demos,
            ensemble=bcnd_ensemble,
            rounds=bcnd_rounds,
            steps=steps,
            seed=seed,
            progress=progress,
            out=out,
        )
    from choicebc.heads import HEADS
    from choicebc.train import TrainConfig, train_bc

    if spec.head not in HEADS:
        raise ReportError(f"method {method!r} needs head {spec.head!r}, not registered here")
    cfg = TrainConfig(head=spec.head, steps=steps, seed=seed, clean_only=spec.clean_only)
    if spec.choice is not None:
        cfg = replace(cfg, choice=spec.choice)
    if spec.top_by_return:
        demos = top_episodes_by_return(demos, 1.0 - ratio)
    return train_bc(demos, config=cfg, out=out, progress=progress)


def top_episodes_by_return(demos: Any, share: float) -> Any:
    """The ``share`` of ``demos``' episodes with the highest returns (at least one): %BC."""
    n = max(1, int(round(share * demos.num_episodes)))
    order = np.argsort(-np.asarray(demos.episode_returns), kind="stable")
    keep = np.zeros(demos.num_episodes, dtype=bool)
    keep[order[:n]] = True
    return demos.filter_episodes(keep)


def demo_scores(method: str, policy: Any, demos: Any) -> np.ndarray | None:
    """``(E,)`` how each method ranks whole demonstrations (high = the target's), or None:
    ``demo_quality`` for a BC policy with a noise model, the episode mean of ``data_quality``
    for BCND, the return for %BC."""
    spec = METHODS[method]
    if spec.top_by_return:
        return np.asarray(demos.episode_returns, dtype=np.float64)
    if not spec.scores:
        return None
    if hasattr(policy, "demo_quality"):
        return policy.demo_quality(demos)
    from choicebc.demoset import episode_means

    return episode_means(policy.data_quality(demos), demos.episode_lengths)


def corruption_auc(quality: np.ndarray, is_corrupt: np.ndarray) -> float | None:
    """ROC AUC of ``quality (M,)`` (high = clean) at separating clean from corrupt steps.

    Returns ``None`` when ``is_corrupt (M,) bool`` holds only one class (no AUC exists).
    """
    is_corrupt = np.asarray(is_corrupt, dtype=bool)
    if is_corrupt.all() or not is_corrupt.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(~is_corrupt, np.asarray(quality, dtype=np.float64)))


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


# ------------------------------------------------------------------------------ grid
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


# ------------------------------------------------------------------------------ config
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
class ReportConfig:
    """Settings of ``choicebc report`` (the flags are generated from these)."""

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
    episodes: int = 100
    """demonstration episodes per demo set"""
    steps: int = 20_000
    """optimizer steps per BC policy"""
    bcnd_steps: int = 4_000
    """BCND optimizer steps per member per round (5 members x 3 rounds)"""
    eval_episodes: int = 100
    """evaluation episodes per policy"""
    num_envs: int = 100
    """parallel simulations for collection and evaluation"""
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
    default they are kept, and the report lists them)"""
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


@functools.cache
def code_version() -> str:
    """``"<choicebc version>+<12 hex>"``: a hash of the package's source files that shape a
    cell's numbers (not its figures or CLI). Cells record it, so a grid resumed after a code
    change can tell which cells came from older code (``--rerun-stale`` recomputes them)."""
    import choicebc

    package = Path(choicebc.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if path.name in RESULT_AFFECTING_EXCLUDE or rel.startswith("bench/"):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{choicebc.__version__}+{digest.hexdigest()[:12]}"


def _grid_dict(cfg: ReportConfig, methods: list[str]) -> dict[str, Any]:
    return {
        "envs": list(cfg.envs),
        "adversaries": list(cfg.adversaries),
        "mixes": list(cfg.mixes),
        "ratios": list(cfg.ratios),
        "seeds": list(cfg.seeds),
        "methods": methods,
        "budget": asdict(cfg.budget),
    }


# ------------------------------------------------------------------------------ files
def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a hidden temp file beside ``path``, then rename it in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


# ------------------------------------------------------------------------------ work
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
    )
    return path, seconds


def run_cell(cell: Cell, root: str | Path, budget: Budget) -> dict[str, Any]:
    """Collect (if needed), train, evaluate and score one cell; returns its JSON record.

    Runs in a worker (one torch thread, one MuJoCo thread), so many run side by side.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _cell_record(cell, Path(root), budget)
    finally:
        torch.set_num_threads(threads)  # run in-process (--workers 1), leave the caller as it was


def _cell_record(cell: Cell, root: Path, budget: Budget) -> dict[str, Any]:
    import choicebc as cb
    from choicebc.demoset import DemoSet

    t0, cpu0 = time.perf_counter(), time.process_time()
    demo_path, _ = ensure_demos(cell, root, budget)
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
        auc = corruption_auc(policy.data_quality(demos), demos.is_corrupt)
    ranking = demo_scores(cell.method, policy, demos)
    if ranking is not None:  # an episode is corrupt when the adversary drove most of it
        demo_auc = corruption_auc(ranking, demos.adversary_share >= 0.5)
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
        },
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _collect_task(cell: Cell, root: str, budget: Budget) -> float:
    import torch

    torch.set_num_threads(1)
    return ensure_demos(cell, Path(root), budget)[1]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


# Relative cost per cell (train steps dominate), so the longest cells start first.
def _cost(cell: Cell, budget: Budget) -> float:
    if cell.method == "bcnd":
        return budget.bcnd_steps * budget.bcnd_ensemble * budget.bcnd_rounds
    return budget.steps


class _SerialPool:
    """Runs tasks one at a time in this process (``--workers 1``; tests count calls).

    A task runs when :meth:`wait_any` asks for it, in submission order, so the progress bar
    moves cell by cell.
    """

    def __init__(self) -> None:
        self._order = 0

    def submit(self, fn: Callable, *args: Any) -> Any:
        self._order += 1
        return _Deferred(self._order, fn, args)

    def wait_any(self, pending: set) -> tuple[set, set]:
        first = min(pending, key=lambda h: h.order)
        first.run()
        return {first}, set(pending) - {first}

    @staticmethod
    def result(handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        pass


class _Deferred:
    """A task of :class:`_SerialPool`, run on demand; ``result`` re-raises its error."""

    def __init__(self, order: int, fn: Callable, args: tuple) -> None:
        self.order, self.fn, self.args = order, fn, args
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller by result()
            self.error = exc

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _ProcessPool(_SerialPool):
    """Local worker processes (spawned: a forked torch/OpenMP parent can deadlock children)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
        )

    def submit(self, fn: Callable, *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def wait_any(self, pending: set) -> tuple[set, set]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return set(done), set(rest)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    """Ray tasks (one CPU each) on the cluster at ``address`` (``local``: start one here)."""

    def __init__(self, address: str, workers: int) -> None:
        ray = import_ray()
        self.ray = ray
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self._remote: dict[Callable, Any] = {}

    def submit(self, fn: Callable, *args: Any) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(num_cpus=1)(fn)
        return self._remote[fn].remote(*args)

    def wait_any(self, pending: set) -> tuple[set, set]:
        done, rest = self.ray.wait(list(pending), num_returns=1)
        return set(done), set(rest)

    def result(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def close(self) -> None:
        pass


def import_ray() -> Any:
    """Import Ray lazily, or raise a :class:`RayUnavailableError` naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            "--ray-address needs Ray: pip install 'choicebc[cluster]' (or pip install ray)"
        ) from exc
    return ray


def _make_pool(cfg: ReportConfig) -> Any:
    workers = cfg.workers or os.cpu_count() or 1
    if cfg.ray_address:
        return _RayPool(cfg.ray_address, workers)
    if workers == 1:
        return _SerialPool()
    return _ProcessPool(workers)


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
                write_json_atomic(payload.path(root), value)
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
    grid = _grid_dict(cfg, methods)
    grid["skipped_envs"] = skipped
    cells = grid_cells(envs, cfg.adversaries, cfg.mixes, cfg.ratios, cfg.seeds, methods)
    budget = cfg.budget
    todo = []
    for cell in cells:
        path = cell.path(root)
        if path.is_file() and not cfg.force:
            finished = json.loads(path.read_text())
            if finished.get("budget") != asdict(budget):
                raise ReportError(
                    f"{path} was made with budget {finished.get('budget')}, not "
                    f"{asdict(budget)}: use another --out for this budget, or --force to redo"
                )
            if not cfg.rerun_stale or finished.get("code_version") == code_version():
                continue
        todo.append(cell)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / "grid.json", grid)
    print(f"{len(cells)} cells in the grid, {len(cells) - len(todo)} finished, {len(todo)} to run")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    failures: dict[Cell, str] = {}
    records: list[dict[str, Any]] = []
    if todo:
        pool = _make_pool(cfg)
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


# ------------------------------------------------------------------------------ render
def render_report(root: str | Path, results: str | Path) -> Path:
    """Write the markdown report (and its figures) from the cell JSONs under ``root``.

    The rendering lives in :mod:`choicebc.report_render`, outside :func:`code_version`: a
    change to the tables or figures does not mark finished cells as stale.

    Returns:
        The markdown path. Figures go to ``<results stem>_figures/`` beside it.
    """
    from choicebc.report_render import render_report as render

    return render(root, results)


# ------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from choicebc.cli import add_dataclass_arguments

    add_dataclass_arguments(parser, ReportConfig)


def run(args: argparse.Namespace) -> int:
    from choicebc.cli import dataclass_from_args

    cfg = dataclass_from_args(ReportConfig, args)
    try:
        run_report(cfg)
    except (ReportError, RayUnavailableError) as exc:
        print(f"choicebc report: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "Budget",
    "Cell",
    "METHODS",
    "Method",
    "QUICK",
    "ReportConfig",
    "ReportError",
    "RayUnavailableError",
    "available_methods",
    "collect_demos",
    "corruption_auc",
    "grid_cells",
    "render_report",
    "run_cell",
    "run_report",
    "train_method",
]
