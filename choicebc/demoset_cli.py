"""``choicebc demos info|score|filter``: inspect, score and clean a DemoSet file.

The loop a practitioner runs: ``score`` (a trained policy rates every step), inspect (the ROC
AUC against the ground truth, ``info``), ``filter`` (keep the steps rated >= q), retrain.

``score`` writes a copy of the file with one extra per-step dataset per episode, readable with
plain h5py::

    /data                   attrs: + quality_policy (folder), quality_kind, quality_auc (if labels)
    /data/demo_<i>/quality  (T,) float32   P(the step came from the target mixture), in [0, 1]

Each ``demos`` subcommand is one entry of :data:`SUBCOMMANDS`: ``(help, add_arguments, run)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.demoset import DemoSet, _commit, check_output_path

QUALITY = "quality"


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="DemoSet file (.h5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def info(args: argparse.Namespace) -> int:
    """Print the summary, the file attributes and the per-episode table head."""
    demos = DemoSet.load(args.path)
    summary = demos.summary()
    if args.json:
        payload = {"path": str(args.path), "summary": summary.as_dict(), "attrs": demos.attrs}
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    print(f"{args.path}")
    print(summary)
    print()
    for key in sorted(demos.attrs):
        value = demos.attrs[key]
        if isinstance(value, list) and len(value) > 8:
            value = f"[{', '.join(f'{v:g}' for v in value[:8])}, ...] ({len(value)} values)"
        print(f"  {key}: {value}")
    shown = min(demos.num_episodes, 10)
    print()
    print("| episode | length | return | adversary share | seed |")
    print("|---|---|---|---|---|")
    share = demos.adversary_share
    for i in range(shown):
        print(
            f"| {i} | {demos.episode_lengths[i]} | {demos.episode_returns[i]:.1f} | "
            f"{share[i]:.2f} | {demos.episode_seeds[i]} |"
        )
    if shown < demos.num_episodes:
        print(f"... {demos.num_episodes - shown} more episodes")
    if demos.has_labels and 0 < demos.is_corrupt.mean() < 1:
        steps = np.bincount(demos.is_corrupt.astype(int), minlength=2)
        print(f"\nsteps by label: {steps[0]:,} expert, {steps[1]:,} corrupt")
    return 0


# ------------------------------------------------------------------------------ score
class QualityError(ValueError):
    """Scores that cannot be written or used: wrong policy for the file, unscored file, bad q."""


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_file` wrote.

    Attributes:
        path: the scored copy.
        quality: ``(M,) float32`` the per-step scores, in the file's flat order.
        roc_auc: ROC AUC of ``quality`` for telling expert from corrupt steps (``None``
            without ground-truth labels or with a single class).
        mean_expert, mean_corrupt: mean quality per ground-truth class (``None`` as above).
    """

    path: Path
    quality: np.ndarray
    roc_auc: float | None
    mean_expert: float | None
    mean_corrupt: float | None


def default_scored_path(path: str | os.PathLike) -> Path:
    """``demos.h5`` -> ``demos.scored.h5`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.scored{path.suffix or '.h5'}")


def quality_roc_auc(quality: np.ndarray, is_corrupt: np.ndarray) -> float | None:
    """ROC AUC of ``quality`` ranking expert steps above corrupt ones (ties count half)."""
    from sklearn.metrics import roc_auc_score

    corrupt = np.asarray(is_corrupt, dtype=bool)
    if corrupt.all() or not corrupt.any():
        return None
    return float(roc_auc_score(~corrupt, np.asarray(quality, dtype=np.float64)))


def _demo_group_names(data: Any) -> list[str]:
    """``demo_<i>`` groups in the order :meth:`DemoSet.load` concatenates them."""
    names = [k for k in data.keys() if re.fullmatch(r"demo_\d+", k)]
    return sorted(names, key=lambda k: int(k[5:]))


def _check_policy_fits(policy: Any, demos: DemoSet, policy_dir: str) -> None:
    if (policy.obs_dim, policy.act_dim) != (demos.obs_dim, demos.act_dim):
        raise QualityError(
            f"policy {policy_dir} takes obs_dim={policy.obs_dim}, act_dim={policy.act_dim} but "
            f"the demos have obs_dim={demos.obs_dim}, act_dim={demos.act_dim}: score them with "
            "a policy trained on this task"
        )
    if policy.env_id is not None and policy.env_id != demos.env_id:
        raise QualityError(
            f"policy {policy_dir} was trained on {policy.env_id}, the demos come from "
            f"{demos.env_id}: score them with a policy trained on {demos.env_id}"
        )


def _write_quality(f: Any, quality: np.ndarray, lengths: np.ndarray) -> None:
    """Write ``quality`` split per episode as ``data/demo_<i>/quality`` (replacing old ones)."""
    data = f["data"]
    start = 0
    for name, t in zip(_demo_group_names(data), lengths, strict=True):
        g = data[name]
        if QUALITY in g:
            del g[QUALITY]
        g.create_dataset(QUALITY, data=quality[start : start + int(t)].astype(np.float32))
        start += int(t)


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def score_file(
    policy_dir: str | os.PathLike,
    demos_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ScoreResult:
    """Score every step of a DemoSet file with a trained policy; write a scored copy.

    The copy is the input file byte for byte plus ``data/demo_<i>/quality`` datasets and
    ``quality_*`` attributes on ``data``; it is written to a temporary file and renamed. The
    input is never modified unless ``out`` names it and ``overwrite`` is True.

    Args:
        policy_dir: a ``BCPolicy`` (ChoiceNet: P(target | s, a)) or ``BCNDPolicy`` folder.
        demos_path: the DemoSet file to score.
        out: the scored copy (default: ``<name>.scored.h5`` beside the input).
        overwrite: replace ``out`` if it exists (this is how to score a file in place).

    Raises:
        PolicyLoadError: ``policy_dir`` is not a readable policy folder.
        FileNotFoundError, DemoFileError: ``demos_path`` is missing or not a DemoSet.
        QualityError: the policy's dims or env do not match the demos.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    import h5py

    from choicebc.bcnd import load_policy_folder

    demos = DemoSet.load(demos_path)
    policy = load_policy_folder(policy_dir)
    _check_policy_fits(policy, demos, str(policy_dir))
    out = Path(out) if out is not None else default_scored_path(demos_path)
    check_output_path(out, overwrite)
    quality = np.asarray(policy.data_quality(demos), dtype=np.float32)
    labelled = demos.has_labels
    auc = quality_roc_auc(quality, demos.is_corrupt) if labelled else None
    means = (None, None)
    if auc is not None:
        means = (
            float(quality[~demos.is_corrupt].mean()),
            float(quality[demos.is_corrupt].mean()),
        )
    tmp = _temp_beside(out)
    try:
        shutil.copyfile(demos_path, tmp)
        with h5py.File(tmp, "r+") as f:
            _write_quality(f, quality, demos.episode_lengths)
            attrs = f["data"].attrs
            attrs["quality_policy"] = str(policy_dir)
            attrs["quality_kind"] = (
                "bcnd relative likelihood"
                if type(policy).__name__ == "BCNDPolicy"
                else f"{policy.head.name} posterior P(target | s, a)"
            )
            if auc is not None:
                attrs["quality_auc"] = auc
            elif "quality_auc" in attrs:
                del attrs["quality_auc"]
        _commit(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ScoreResult(out, quality, auc, *means)


def read_quality(path: str | os.PathLike) -> np.ndarray:
    """``(M,) float32`` the per-step quality of a scored file, in :meth:`DemoSet.load` order.

    Raises:
        QualityError: the file has not been scored (the message names the command).
    """
    import h5py

    with h5py.File(path, "r") as f:
        names = _demo_group_names(f["data"])
        if not names or any(QUALITY not in f["data"][n] for n in names):
            raise QualityError(
                f"{path} has no quality scores: run `choicebc demos score --policy DIR "
                f"--demos {path}` first and filter the scored copy"
            )
        return np.concatenate([f["data"][n][QUALITY][()] for n in names]).astype(np.float32)


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="policy folder (BCPolicy or BCND)")
    parser.add_argument("--demos", required=True, help="DemoSet file (.h5) to score")
    parser.add_argument("--out", default=None, help="scored copy (default: NAME.scored.h5)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def score(args: argparse.Namespace) -> int:
    """Score the demos, write the copy, print the quality per label and the ROC AUC."""
    result = score_file(args.policy, args.demos, args.out, overwrite=args.overwrite)
    q = result.quality
    print(f"scored {q.size:,} steps of {args.demos} with {args.policy}")
    print(
        f"quality: mean {q.mean():.3f}, median {np.median(q):.3f}, "
        f"share >= 0.5 {np.mean(q >= 0.5):.1%}"
    )
    if result.roc_auc is not None:
        print(
            f"mean quality: expert steps {result.mean_expert:.3f}, corrupt steps "
            f"{result.mean_corrupt:.3f}"
        )
        print(f"ROC AUC (quality separates expert from corrupt steps): {result.roc_auc:.4f}")
    else:
        print("ROC AUC: n/a (no ground-truth labels with both classes)")
    print(f"wrote {result.path} (per-step scores in data/demo_<i>/{QUALITY})")
    return 0


# ------------------------------------------------------------------------------ filter
def filter_file(
    path: str | os.PathLike,
    min_quality: float,
    out: str | os.PathLike,
    episodes: bool = False,
    overwrite: bool = False,
    first_steps: int | None = None,
) -> DemoSet:
    """Write the steps (or whole episodes) of a scored file with quality >= ``min_quality``.

    Step mode (default) keeps exactly the rows with ``quality >= min_quality`` in order; each
    run of consecutive kept steps becomes an episode (see :meth:`DemoSet.filter`), so every
    transition keeps its true next observation. Episode mode (``episodes=True``) keeps the
    episodes whose *mean* quality is >= ``min_quality``, whole and unchanged; with
    ``first_steps=k`` the mean is over each episode's first ``k`` steps only (all of a shorter
    one). That is a score for episode-level corruption: a corrupt driver soon leaves the
    states that clean episodes visit, so a per-state model can only tell its actions apart near
    the shared initial states. It inherits the policy's choice of target there: when the
    corrupt driver holds a large share of the data, check which side was kept.

    The output keeps the file attributes, adds ``filtered_from``,
    ``min_quality``, ``filter_mode`` (and ``first_steps``), and carries the kept steps'
    ``quality`` datasets, so it can be inspected or filtered again.

    Raises:
        QualityError: ``min_quality`` outside [0, 1], ``first_steps`` < 1 or without
            ``episodes``, an unscored file, or nothing kept.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    import h5py

    q = float(min_quality)
    if not 0.0 <= q <= 1.0:
        raise QualityError(f"--min-quality must be in [0, 1] (a probability), got {min_quality}")
    if first_steps is not None:
        if not episodes:
            raise QualityError("--first-steps scores whole episodes: add --episodes")
        if int(first_steps) != first_steps or first_steps < 1:
            raise QualityError(f"--first-steps must be an integer >= 1, got {first_steps}")
    out = Path(out)
    if Path(path).resolve() == out.resolve() and not overwrite:
        raise FileExistsError(f"--out {out} is the input file: choose another name")
    check_output_path(out, overwrite)
    demos = DemoSet.load(path)
    quality = read_quality(path)
    if quality.shape != (demos.num_transitions,):
        raise QualityError(f"{path}: {quality.size} quality scores for {len(demos)} steps")
    if episodes:
        lengths = demos.episode_lengths
        k = int(first_steps) if first_steps is not None else int(lengths.max())
        early = np.where(demos.timesteps < k, quality.astype(np.float64), 0.0)
        ep_mean = np.add.reduceat(early, demos.episode_starts) / np.minimum(lengths, k)
        keep_rows = np.repeat(ep_mean >= q, demos.episode_lengths)
    else:
        keep_rows = quality >= q
    if not keep_rows.any():
        raise QualityError(
            f"no {'episode' if episodes else 'step'} of {path} has quality >= {q:g} "
            f"(max {quality.max():.3f}): lower --min-quality"
        )
    kept = demos.filter(keep_rows)
    kept.attrs.pop("quality_auc", None)  # it described the unfiltered set
    kept.attrs.update(
        filtered_from=str(path), min_quality=q, filter_mode="episodes" if episodes else "steps"
    )
    if first_steps is not None:
        kept.attrs["first_steps"] = int(first_steps)
    tmp = _temp_beside(out)
    try:
        kept.save(tmp)
        with h5py.File(tmp, "r+") as f:
            _write_quality(f, quality[keep_rows], kept.episode_lengths)
        _commit(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return kept


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demos", required=True, help="scored DemoSet file (demos score)")
    parser.add_argument(
        "--min-quality", type=float, required=True, help="keep steps with quality >= q, q in [0, 1]"
    )
    parser.add_argument("--out", required=True, help="cleaned DemoSet file")
    parser.add_argument(
        "--episodes",
        action="store_true",
        help="keep whole episodes whose mean quality >= q (default: keep individual steps)",
    )
    parser.add_argument(
        "--first-steps",
        type=int,
        default=None,
        metavar="K",
        help="with --episodes: average each episode's quality over its first K steps only "
        "(for corruption by whole episodes, which a per-state model sees near the start)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def filter_command(args: argparse.Namespace) -> int:
    """Write the cleaned set and print what was kept (and the corrupt share before/after)."""
    before = DemoSet.load(args.demos)
    kept = filter_file(
        args.demos, args.min_quality, args.out, args.episodes, args.overwrite, args.first_steps
    )
    mode = "whole episodes" if args.episodes else "steps"
    if args.first_steps is not None:
        mode += f", scored by their first {args.first_steps} steps"
    print(
        f"kept {len(kept):,} of {len(before):,} steps ({len(kept) / len(before):.1%}) with "
        f"quality >= {args.min_quality:g} ({mode}); {kept.num_episodes:,} episodes"
    )
    if before.has_labels:
        print(
            f"corrupt share: {before.is_corrupt.mean():.1%} before, {kept.is_corrupt.mean():.1%} "
            "after"
        )
    print(f"wrote {args.out}")
    return 0


# name -> (help, add_arguments, run)
SUBCOMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "info": ("summary, attributes and episodes of a DemoSet file", add_info_arguments, info),
    "score": (
        "rate every step with a trained policy (data_quality) into a copy of the file",
        add_score_arguments,
        score,
    ),
    "filter": (
        "write a cleaned set: the steps (or episodes) with quality >= q",
        add_filter_arguments,
        filter_command,
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="demos_command", metavar="{" + ",".join(SUBCOMMANDS) + "}", required=True
    )
    for name, (help_text, add, _) in SUBCOMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    try:
        return int(SUBCOMMANDS[args.demos_command][2](args) or 0)
    except (ValueError, OSError) as exc:  # DemoFileError, PolicyLoadError, QualityError...
        print(f"choicebc demos {args.demos_command}: {exc}", file=sys.stderr)
        return 2
