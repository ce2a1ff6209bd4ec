"""``choicebc demos info|score|filter|import``: inspect, score, clean and import demonstrations.

The loop a practitioner runs: ``score`` (a trained policy rates every step and every
demonstration), inspect (the ROC AUC against the ground truth, ``info``), ``filter`` (keep the
steps or demos rated >= q, as a new file or as a robomimic filter key in the same file),
retrain. ``import`` turns a robomimic dataset into a DemoSet file.

``score`` writes a copy of the file with one extra per-step dataset and one attribute per
episode, readable with plain h5py::

    /data                   attrs: + quality_policy (folder), quality_kind, quality_auc (if labels),
                                     demo_quality_auc (if labels)
    /data/demo_<i>          attrs: + demo_quality  P(the target demonstrator drove the episode)
    /data/demo_<i>/quality  (T,) float32   P(the step came from the target mixture), in [0, 1]

``filter --write-mask NAME`` adds ``/mask/NAME`` (the kept demos' names, robomimic's format) to
the input file itself, atomically.

Each ``demos`` subcommand is one entry of :data:`SUBCOMMANDS`: ``(help, add_arguments, run)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from choicebc.atomic import commit_file, temp_beside
from choicebc.demoset import (
    DemoSet,
    check_mask_name,
    check_output_path,
    masks_of,
    open_for_reading,
    put_mask,
    sorted_demo_names,
)
from choicebc.demoset import (
    write_mask as add_mask,
)
from choicebc.metrics import CORRUPT_EPISODE_SHARE, demo_roc_auc, roc_auc

QUALITY = "quality"
DEMO_QUALITY = "demo_quality"


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="DemoSet file (.h5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def info(args: argparse.Namespace) -> int:
    """Print the summary, the file attributes and the per-episode table head."""
    demos = DemoSet.load(args.path)
    summary = demos.summary()
    bad = demos.non_finite_steps()
    if bad:
        counts = ", ".join(f"{name} in {n:,} step{'s' * (n != 1)}" for name, n in bad.items())
        print(
            f"warning: {args.path} holds NaN or inf values ({counts}): collect it again or "
            "drop those episodes before training on it",
            file=sys.stderr,
        )
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
    if demos.groups is not None:
        ids, counts = np.unique(demos.groups, return_counts=True)
        parts = ", ".join(f"{i} ({c})" for i, c in zip(ids.tolist(), counts.tolist(), strict=True))
        print(f"\ngroups (operator: episodes): {parts}")
    if demos.demo_quality is not None:
        dq = demos.demo_quality
        print(f"demo_quality: mean {dq.mean():.3f}, min {dq.min():.3f}, max {dq.max():.3f}")
    with open_for_reading(args.path) as f:
        masks = masks_of(f)
    if masks:
        print("masks: " + ", ".join(f"{k} ({len(v)} demos)" for k, v in sorted(masks.items())))
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
        demo_quality: ``(E,) float64`` P(the target demonstrator drove episode e)
            (``policy.demo_quality``; ``None`` for a policy without it, e.g. BCND).
        demo_roc_auc: ROC AUC of ``demo_quality`` for telling clean from corrupt episodes, an
            episode counting as corrupt when its ``adversary_share`` >= 0.5 (``None`` without
            labels, without ``demo_quality``, or with a single class).
    """

    path: Path
    quality: np.ndarray
    roc_auc: float | None
    mean_expert: float | None
    mean_corrupt: float | None
    demo_quality: np.ndarray | None = None
    demo_roc_auc: float | None = None


def default_scored_path(path: str | os.PathLike) -> Path:
    """``demos.h5`` -> ``demos.scored.h5`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.scored{path.suffix or '.h5'}")


def _check_policy_fits(policy: Any, demos: DemoSet, policy_dir: str, demos_path: str) -> None:
    if (policy.obs_dim, policy.act_dim) != (demos.obs_dim, demos.act_dim):
        raise QualityError(
            f"policy {policy_dir} takes obs_dim={policy.obs_dim}, act_dim={policy.act_dim} but "
            f"the demos in {demos_path} have obs_dim={demos.obs_dim}, act_dim={demos.act_dim}: "
            "score them with a policy trained on this task"
        )
    if policy.env_id is not None and policy.env_id != demos.env_id:
        raise QualityError(
            f"policy {policy_dir} was trained on {policy.env_id}, the demos in {demos_path} "
            f"come from {demos.env_id}: score them with a policy trained on {demos.env_id}"
        )


def _write_quality(f: Any, quality: np.ndarray, lengths: np.ndarray) -> None:
    """Write ``quality`` split per episode as ``data/demo_<i>/quality`` (replacing old ones)."""
    data = f["data"]
    start = 0
    for name, t in zip(sorted_demo_names(data), lengths, strict=True):
        g = data[name]
        if QUALITY in g:
            del g[QUALITY]
        g.create_dataset(QUALITY, data=quality[start : start + int(t)].astype(np.float32))
        start += int(t)


def _write_demo_quality(f: Any, demo_quality: np.ndarray | None) -> None:
    """Set (or, for ``None``, remove) the ``demo_quality`` attribute of every demo."""
    data = f["data"]
    names = sorted_demo_names(data)
    for i, name in enumerate(names):
        attrs = data[name].attrs
        if demo_quality is not None:
            attrs[DEMO_QUALITY] = float(demo_quality[i])
        elif DEMO_QUALITY in attrs:
            del attrs[DEMO_QUALITY]


def _set_or_delete(attrs: Any, key: str, value: Any) -> None:
    if value is not None:
        attrs[key] = value
    elif key in attrs:
        del attrs[key]


def score_file(
    policy_dir: str | os.PathLike,
    demos_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ScoreResult:
    """Score every step and every episode of a DemoSet file with a trained policy; write a
    scored copy.

    The copy is the input file byte for byte plus ``data/demo_<i>/quality`` datasets
    (``policy.data_quality``), a ``demo_quality`` attribute on each ``data/demo_<i>``
    (``policy.demo_quality``, when the policy has it) and ``quality_*`` /
    ``demo_quality_auc`` attributes on ``data``; it is written to a temporary file and renamed.
    The input is never modified unless ``out`` names it and ``overwrite`` is True.

    Args:
        policy_dir: a ``BCPolicy`` (ChoiceNet: P(target | s, a)) or ``BCNDPolicy`` folder.
        demos_path: the DemoSet file to score.
        out: the scored copy (default: ``<name>.scored.h5`` beside the input).
        overwrite: replace ``out`` if it exists (this is how to score a file in place).

    Raises:
        PolicyLoadError: ``policy_dir`` is not a readable policy folder.
        FileNotFoundError, DemoFileError: ``demos_path`` is missing or not a DemoSet.
        QualityError: the policy's dims or env do not match the demos, or it cannot score
            them (a head without a noise model, NaN observations).
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    import h5py

    from choicebc.bcnd import load_policy_folder

    demos = DemoSet.load(demos_path)
    policy = load_policy_folder(policy_dir)
    _check_policy_fits(policy, demos, str(policy_dir), str(demos_path))
    out = Path(out) if out is not None else default_scored_path(demos_path)
    check_output_path(out, overwrite)
    try:
        quality = np.asarray(policy.data_quality(demos), dtype=np.float32)
    except ValueError as exc:  # a head without a noise model, NaN observations
        raise QualityError(f"cannot score {demos_path} with policy {policy_dir}: {exc}") from exc
    labelled = demos.has_labels
    auc = roc_auc(quality, demos.is_corrupt) if labelled else None
    means = (None, None)
    if auc is not None:
        means = (
            float(quality[~demos.is_corrupt].mean()),
            float(quality[demos.is_corrupt].mean()),
        )
    demo_q = demo_auc = None
    if hasattr(policy, "demo_quality"):  # BCPolicy; BCND scores steps only
        try:
            demo_q = np.asarray(policy.demo_quality(demos), dtype=np.float64)
        except ValueError as exc:
            raise QualityError(
                f"cannot score the demos of {demos_path} with policy {policy_dir}: {exc}"
            ) from exc
        if demo_q.shape != (demos.num_episodes,):
            raise QualityError(
                f"policy {policy_dir} gave demo_quality of shape {demo_q.shape} for "
                f"{demos.num_episodes} episodes"
            )
        demo_auc = demo_roc_auc(demo_q, demos.adversary_share) if labelled else None
    tmp = temp_beside(out)
    try:
        shutil.copyfile(demos_path, tmp)
        with h5py.File(tmp, "r+") as f:
            _write_quality(f, quality, demos.episode_lengths)
            _write_demo_quality(f, demo_q)
            attrs = f["data"].attrs
            attrs["quality_policy"] = str(policy_dir)
            attrs["quality_kind"] = (
                "bcnd relative likelihood"
                if type(policy).__name__ == "BCNDPolicy"
                else f"{policy.head.name} posterior P(target | s, a)"
            )
            _set_or_delete(attrs, "quality_auc", auc)
            _set_or_delete(attrs, "demo_quality_auc", demo_auc)
        commit_file(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ScoreResult(out, quality, auc, *means, demo_quality=demo_q, demo_roc_auc=demo_auc)


def read_quality(path: str | os.PathLike) -> np.ndarray:
    """``(M,) float32`` the per-step quality of a scored file, in :meth:`DemoSet.load` order.

    Raises:
        QualityError: the file has not been scored (the message names the command).
    """
    with open_for_reading(path) as f:
        quality = _step_quality(f, sorted_demo_names(f["data"]) if "data" in f else [])
    if quality is None:
        raise _unscored(path)
    return quality


def _unscored(path: str | os.PathLike) -> QualityError:
    return QualityError(
        f"{path} has no quality scores: run `choicebc demos score --policy DIR "
        f"--demos {path}` first and filter the scored copy"
    )


def _step_quality(f: Any, names: list[str]) -> np.ndarray | None:
    """The per-step quality of demos ``names`` concatenated, or None if one is unscored."""
    if not names or any(QUALITY not in f["data"][n] for n in names):
        return None
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
    dq = result.demo_quality
    if dq is not None:
        print(
            f"demo quality: mean {dq.mean():.3f}, min {dq.min():.3f}, max {dq.max():.3f}, "
            f"demos >= 0.5: {int((dq >= 0.5).sum())} of {dq.size}"
        )
        if result.demo_roc_auc is not None:
            print(
                "per-demo ROC AUC (demo_quality separates clean from corrupt episodes, corrupt "
                f"= adversary share >= {CORRUPT_EPISODE_SHARE:g}): {result.demo_roc_auc:.4f}"
            )
        else:
            print("per-demo ROC AUC: n/a (no ground-truth labels with both classes)")
        where = f"data/demo_<i>/{QUALITY} and the {DEMO_QUALITY} attribute of data/demo_<i>"
    else:
        print("demo quality: n/a (this policy scores steps only)")
        where = f"data/demo_<i>/{QUALITY}"
    print(f"wrote {result.path} (scores in {where})")
    return 0


# ------------------------------------------------------------------------------ filter
BY_CHOICES = ("step", "demo")


def filter_file(
    path: str | os.PathLike,
    min_quality: float,
    out: str | os.PathLike | None = None,
    episodes: bool = False,
    overwrite: bool = False,
    first_steps: int | None = None,
    by: str = "step",
    write_mask: str | None = None,
) -> DemoSet:
    """Keep the steps (or whole episodes) of a scored file with quality >= ``min_quality``.

    Step mode (default) keeps exactly the rows with ``quality >= min_quality`` in order; each
    run of consecutive kept steps becomes an episode (see :meth:`DemoSet.filter`), so every
    transition keeps its true next observation. Episode mode (``episodes=True``) keeps the
    episodes whose *mean* quality is >= ``min_quality``, whole and unchanged; with
    ``first_steps=k`` the mean is over each episode's first ``k`` steps only (all of a shorter
    one). That is a score for episode-level corruption: a corrupt driver soon leaves the
    states that clean episodes visit, so a per-state model can only tell its actions apart near
    the shared initial states. It inherits the policy's choice of target there: when the
    corrupt driver holds a large share of the data, check which side was kept.
    ``by="demo"`` keeps the episodes whose per-demonstration ``demo_quality`` (written by
    ``demos score``) is >= ``min_quality``: whole episodes, so it implies ``episodes``.

    The kept set goes to ``out`` (a new DemoSet file) and/or, with ``write_mask=NAME``, into
    the input file itself as the robomimic filter key ``mask/NAME`` naming the kept demos (see
    :func:`choicebc.demoset.write_mask`; whole episodes only). ``out`` keeps the file
    attributes, adds ``filtered_from``, ``min_quality``, ``filter_mode``, ``filter_by`` (and
    ``first_steps``), and carries the kept steps' ``quality`` datasets and ``demo_quality``, so
    it can be inspected or filtered again.

    Returns:
        The kept DemoSet.

    Raises:
        QualityError: ``min_quality`` outside [0, 1], ``first_steps`` < 1 or without
            ``episodes``, ``write_mask`` without episode mode, neither ``out`` nor
            ``write_mask``, an unscored file, or nothing kept.
        FileExistsError: ``out`` (or the mask) exists and ``overwrite`` is False.
    """
    q = float(min_quality)
    if not 0.0 <= q <= 1.0:
        raise QualityError(f"--min-quality must be in [0, 1] (a probability), got {min_quality}")
    if by not in BY_CHOICES:
        raise QualityError(f"--by must be one of {BY_CHOICES}, got {by!r}")
    episodes = episodes or by == "demo"
    if first_steps is not None:
        if by == "demo":
            raise QualityError("--first-steps averages per-step quality: drop it with --by demo")
        if not episodes:
            raise QualityError("--first-steps scores whole episodes: add --episodes")
        if int(first_steps) != first_steps or first_steps < 1:
            raise QualityError(f"--first-steps must be an integer >= 1, got {first_steps}")
    if out is None and write_mask is None:
        raise QualityError("say where the kept set goes: --out FILE and/or --write-mask NAME")
    if write_mask is not None:
        check_mask_name(write_mask)
        if not episodes:
            raise QualityError(
                "--write-mask names whole demos: add --episodes (or --by demo) to keep whole "
                "episodes"
            )
    if out is not None:
        out = _check_filter_out(path, out, overwrite)
    demos = DemoSet.load(path)
    with open_for_reading(path) as f:
        names = sorted_demo_names(f["data"])
        quality = _step_quality(f, names)
        if write_mask is not None and write_mask in masks_of(f) and not overwrite:
            raise FileExistsError(
                f"{path} already has mask/{write_mask}: pass --overwrite to replace it, or "
                "choose another name"
            )
    if by == "demo":
        if demos.demo_quality is None:
            raise QualityError(
                f"{path} has no per-demo scores (demo_quality): run `choicebc demos score "
                f"--policy DIR --demos {path}` with a BCPolicy first, or filter --by step"
            )
        scores = demos.demo_quality
        keep_rows = np.repeat(scores >= q, demos.episode_lengths)
    else:
        if quality is None:
            raise _unscored(path)
        if quality.shape != (demos.num_transitions,):
            raise QualityError(f"{path}: {quality.size} quality scores for {len(demos)} steps")
        scores = quality
        if episodes:
            lengths = demos.episode_lengths
            k = int(first_steps) if first_steps is not None else int(lengths.max())
            early = np.where(demos.timesteps < k, quality.astype(np.float64), 0.0)
            ep_mean = np.add.reduceat(early, demos.episode_starts) / np.minimum(lengths, k)
            keep_rows = np.repeat(ep_mean >= q, demos.episode_lengths)
        else:
            keep_rows = quality >= q
    if not keep_rows.any():
        what = "demo" if by == "demo" else "episode" if episodes else "step"
        raise QualityError(
            f"no {what} of {path} has quality >= {q:g} (max {scores.max():.3f}): "
            "lower --min-quality"
        )
    kept = demos.filter(keep_rows)
    for described_all in ("quality_auc", "demo_quality_auc"):
        kept.attrs.pop(described_all, None)
    kept.attrs.update(
        filtered_from=str(path),
        min_quality=q,
        filter_mode="episodes" if episodes else "steps",
        filter_by=by,
    )
    if first_steps is not None:
        kept.attrs["first_steps"] = int(first_steps)
    if out is not None:
        kept_quality = None if quality is None else quality[keep_rows]
        _save_with_quality(kept, kept_quality, out, overwrite)
    if write_mask is not None:
        keep_episodes = keep_rows[demos.episode_starts]
        chosen = [n for n, k in zip(names, keep_episodes, strict=True) if k]
        add_mask(path, write_mask, chosen, overwrite=overwrite)
    return kept


def _check_filter_out(path: str | os.PathLike, out: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out)
    if Path(path).resolve() == out.resolve():
        raise FileExistsError(
            f"--out {out} is the input file: choose another name (to mark a subset inside the "
            "input, use --write-mask NAME)"
        )
    return check_output_path(out, overwrite)


def _save_with_quality(
    demos: DemoSet, quality: np.ndarray | None, out: Path, overwrite: bool
) -> None:
    """Save ``demos`` to ``out`` atomically, with its per-step ``quality`` when given."""
    import h5py

    tmp = temp_beside(out)
    try:
        demos.save(tmp)
        if quality is not None:
            with h5py.File(tmp, "r+") as f:
                _write_quality(f, quality, demos.episode_lengths)
        commit_file(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def subset_by_mask(
    path: str | os.PathLike, mask: str, out: str | os.PathLike, overwrite: bool = False
) -> DemoSet:
    """Write the demos named by the filter key ``mask/<mask>`` of ``path`` to ``out``.

    The subset is ``DemoSet.load(path, mask=mask)`` (whole demos, in the file's order), with
    their per-step ``quality`` when the file is scored, and the attributes ``filtered_from``,
    ``filter_mode="mask"`` and ``mask``.

    Raises:
        DemoFileError: no such mask, or one naming demos the file does not hold.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    check_mask_name(mask)
    out = _check_filter_out(path, out, overwrite)
    kept = DemoSet.load(path, mask=mask)
    with open_for_reading(path) as f:
        wanted = set(masks_of(f)[mask])
        names = [n for n in sorted_demo_names(f["data"]) if n in wanted]
        quality = _step_quality(f, names)
    for described_all in ("quality_auc", "demo_quality_auc"):
        kept.attrs.pop(described_all, None)
    kept.attrs.update(filtered_from=str(path), filter_mode="mask", mask=mask)
    _save_with_quality(kept, quality, out, overwrite)
    return kept


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demos", required=True, help="scored DemoSet file (demos score)")
    parser.add_argument(
        "--min-quality",
        type=float,
        default=None,
        help="keep steps (or demos) with quality >= q, q in [0, 1] (required unless --mask)",
    )
    parser.add_argument("--out", default=None, help="cleaned DemoSet file (a new file)")
    parser.add_argument(
        "--episodes",
        action="store_true",
        help="keep whole episodes whose mean quality >= q (default: keep individual steps)",
    )
    parser.add_argument(
        "--by",
        choices=BY_CHOICES,
        default="step",
        help="the score to filter by: 'step' (default) the per-step quality (with --episodes: "
        "its mean over each episode); 'demo' each episode's demo_quality from `demos score` "
        "(P(the target demonstrator drove it); keeps whole episodes, --episodes implied)",
    )
    parser.add_argument(
        "--first-steps",
        type=int,
        default=None,
        metavar="K",
        help="with --episodes: average each episode's quality over its first K steps only "
        "(for corruption by whole episodes, which a per-state model sees near the start)",
    )
    parser.add_argument(
        "--write-mask",
        default=None,
        metavar="NAME",
        help="write the kept demos as the robomimic filter key mask/NAME into --demos itself "
        "(atomically; needs --episodes or --by demo); with or instead of --out",
    )
    parser.add_argument(
        "--mask",
        default=None,
        metavar="NAME",
        help="write the demos named by the existing mask/NAME of --demos to --out "
        "(no quality needed; excludes the quality options)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out, or the --write-mask mask"
    )


def filter_command(args: argparse.Namespace) -> int:
    """Write the cleaned set and print what was kept (and the corrupt share before/after)."""
    if args.mask is not None:
        given = [
            flag
            for flag, value in (
                ("--min-quality", args.min_quality is not None),
                ("--episodes", args.episodes),
                ("--by", args.by != "step"),
                ("--first-steps", args.first_steps is not None),
                ("--write-mask", args.write_mask is not None),
            )
            if value
        ]
        if given:
            raise QualityError(f"--mask NAME selects a subset by itself: drop {', '.join(given)}")
        if args.out is None:
            raise QualityError("--mask NAME writes its subset to a new file: add --out FILE")
        before = DemoSet.load(args.demos)
        kept = subset_by_mask(args.demos, args.mask, args.out, args.overwrite)
        print(
            f"kept {kept.num_episodes:,} of {before.num_episodes:,} demos in mask/{args.mask} "
            f"({len(kept):,} of {len(before):,} steps)"
        )
        _print_corrupt_share(before, kept)
        print(f"wrote {args.out}")
        return 0
    if args.min_quality is None:
        raise QualityError(
            "give --min-quality q (keep what is rated >= q), or --mask NAME (a named subset)"
        )
    before = DemoSet.load(args.demos)
    kept = filter_file(
        args.demos,
        args.min_quality,
        args.out,
        args.episodes,
        args.overwrite,
        args.first_steps,
        by=args.by,
        write_mask=args.write_mask,
    )
    if args.by == "demo":
        mode = "whole episodes, by demo_quality"
    else:
        mode = "whole episodes" if args.episodes else "steps"
        if args.first_steps is not None:
            mode += f", scored by their first {args.first_steps} steps"
    print(
        f"kept {len(kept):,} of {len(before):,} steps ({len(kept) / len(before):.1%}) with "
        f"quality >= {args.min_quality:g} ({mode}); {kept.num_episodes:,} episodes"
    )
    if args.episodes and args.by == "step" and before.demo_quality is not None:
        print("(this file has per-demo scores: --by demo filters by them)")
    _print_corrupt_share(before, kept)
    if args.out is not None:
        print(f"wrote {args.out}")
    if args.write_mask is not None:
        print(
            f"wrote mask/{args.write_mask} ({kept.num_episodes} of {before.num_episodes} demos) "
            f"into {args.demos}: DemoSet.load(path, mask={args.write_mask!r}), "
            f"`demos filter --mask {args.write_mask}`, robomimic filter_by_attribute"
        )
    return 0


def _print_corrupt_share(before: DemoSet, kept: DemoSet) -> None:
    if before.has_labels:
        print(
            f"corrupt share: {before.is_corrupt.mean():.1%} before, {kept.is_corrupt.mean():.1%} "
            "after"
        )


# ------------------------------------------------------------------------------ import
def import_robomimic(
    source: str | os.PathLike,
    obs_keys: Iterable[str],
    out: str | os.PathLike,
    env_id: str | None = None,
    group_masks: Iterable[str] | None = None,
    overwrite: bool = False,
) -> DemoSet:
    """Convert a robomimic dataset into a DemoSet file (:meth:`DemoSet.from_robomimic`).

    The source's filter keys ``mask/<name>`` are copied into ``out`` with their demo names
    translated (the DemoSet numbers its demos ``demo_0..`` in robomimic's order, e.g. a source
    ``demo_1, demo_2, ...`` becomes ``demo_0, demo_1, ...``); masks naming demos the source
    does not hold are left out. ``out`` gets the attribute ``source_demos`` (JSON: the source
    demo name of each episode).

    Raises:
        FileNotFoundError, DemoFileError: see :meth:`DemoSet.from_robomimic`.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    import h5py

    out = check_output_path(out, overwrite)
    if Path(source).resolve() == out.resolve():
        raise FileExistsError(f"--out {out} is the robomimic file: choose another name")
    demos = DemoSet.from_robomimic(source, obs_keys, env_id=env_id, group_masks=group_masks)
    with open_for_reading(source, what="robomimic dataset") as f:
        names = sorted_demo_names(f["data"])
        masks = masks_of(f)
    renamed = {name: f"demo_{i}" for i, name in enumerate(names)}
    demos.attrs["source_demos"] = json.dumps(names)
    tmp = temp_beside(out)
    try:
        demos.save(tmp)
        with h5py.File(tmp, "r+") as f:
            for mask, members in sorted(masks.items()):
                if members and all(m in renamed for m in members):
                    put_mask(f, mask, [renamed[m] for m in members])
        commit_file(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return demos


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--robomimic", required=True, metavar="FILE", help="robomimic dataset (.hdf5)"
    )
    parser.add_argument(
        "--obs-keys",
        nargs="+",
        required=True,
        metavar="KEY",
        help="observation keys (data/demo_<i>/obs/<KEY>), flattened and concatenated in this "
        "order into each step's observation",
    )
    parser.add_argument("--out", required=True, help="DemoSet file to write (.h5)")
    parser.add_argument(
        "--env-id", default=None, help="task id (default: env_name of data.attrs['env_args'])"
    )
    parser.add_argument(
        "--group-masks",
        nargs="+",
        default=None,
        metavar="MASK",
        help="masks that split the demos into operators (default: robomimic's worse okay "
        "better, when present and disjoint)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def import_command(args: argparse.Namespace) -> int:
    """Convert, then print the summary, the observation layout and the groups."""
    demos = import_robomimic(
        args.robomimic,
        args.obs_keys,
        args.out,
        env_id=args.env_id,
        group_masks=args.group_masks,
        overwrite=args.overwrite,
    )
    print(f"imported {args.robomimic}")
    print(demos.summary())
    print(f"observation = {' + '.join(args.obs_keys)} (flattened, in this order): {demos.obs_dim}")
    if demos.groups is not None:
        ids, counts = np.unique(demos.groups, return_counts=True)
        parts = ", ".join(f"{i} ({c})" for i, c in zip(ids.tolist(), counts.tolist(), strict=True))
        print(f"groups: {parts}")
    else:
        print("groups: none (no operator masks; see --group-masks)")
    with open_for_reading(args.out) as f:
        masks = sorted(masks_of(f))
    if masks:
        print(f"masks: {', '.join(masks)}")
    print(f"wrote {args.out}")
    return 0


# name -> (help, add_arguments, run)
SUBCOMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "info": ("summary, attributes and episodes of a DemoSet file", add_info_arguments, info),
    "score": (
        "rate every step and every demo with a trained policy (data_quality, demo_quality) "
        "into a copy of the file",
        add_score_arguments,
        score,
    ),
    "filter": (
        "write a cleaned set (the steps or episodes with quality >= q) or a mask/NAME subset",
        add_filter_arguments,
        filter_command,
    ),
    "import": (
        "convert a robomimic dataset (.hdf5) into a DemoSet file",
        add_import_arguments,
        import_command,
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
