"""``choicebc train``: the settings of :func:`choicebc.train.train_bc` and the CLI verb.

Torch-free, so ``choicebc train --help`` answers without loading torch; :mod:`choicebc.train`
re-exports :class:`TrainConfig`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

RUN_FILES = ("policy", "checkpoint", "log.csv", "tb")
"""what a run folder holds (``choicebc train`` refuses to replace them without --overwrite)"""


@dataclass
class TrainConfig:
    """Behaviour-cloning settings (the ``choicebc train`` flags are generated from these)."""

    head: str = "choicenet"
    """output head: choicenet, mdn, mse, l1 or robust (discrete actions: choicenet, ce, mdn,
    fcorrection)"""
    steps: int = 20_000
    """optimizer steps"""
    batch_size: int = 256
    """transitions per step"""
    lr: float = 1e-3
    """Adam learning rate (x0.1 at 50 % and x0.01 at 75 % of the steps)"""
    weight_decay: float = 1e-5
    """Adam L2 weight decay"""
    hidden: tuple[int, ...] = field(default=(256, 256))
    """backbone hidden sizes (ReLU)"""
    seed: int = 0
    """seed of the split, the initialisation, the batches and the head's sampling"""
    val_fraction: float = 0.05
    """share of episodes held out for validation"""
    log_every: int = 500
    """steps between log rows (and validation)"""
    checkpoint_every: int = 2_000
    """steps between checkpoints (0: only at the end)"""
    clean_only: bool = False
    """train only on steps whose ground-truth label says the expert acted (the oracle)"""
    torch_threads: int = 0
    """torch intra-op threads (0: torch's default)"""
    choice: str = "auto"
    """ChoiceNet's choice of mixture: step (eq. (6), per step), episode or group (one choice
    per demonstration / per operator group), auto (picked per dataset); other heads: step"""
    choice_horizon: int = 5
    """first steps of every episode that decide a demonstration's choice at first"""
    choice_warmup: float = 0.1
    """length of the per-step warm-up on the first steps, which runs before the training
    (episode, group and auto; at least 500 steps), as a share of --steps"""
    choice_grow: float = 0.5
    """share of the steps by which the choice's horizon covers whole episodes"""
    choice_anchor: float = 1.0
    """weight that holds each mixture's correlation in a demonstration's newer states to its
    value over the steps already counted"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from choicebc.cli import add_dataclass_arguments

    parser.add_argument("--demos", required=True, help="DemoSet .h5 file")
    parser.add_argument("--out", required=True, help="run folder (policy, logs, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run in OUT (from scratch)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dataclass_arguments(parser, TrainConfig)


def existing_run(out: str | Path) -> list[str]:
    """The parts of a run already in ``out`` (empty: nothing to lose)."""
    return [name for name in RUN_FILES if (Path(out) / name).exists()]


def run(args: argparse.Namespace) -> int:
    from choicebc.cli import dataclass_from_args

    def fail(message: str) -> int:
        print(f"choicebc train: {message}", file=sys.stderr)
        return 2

    try:
        cfg = dataclass_from_args(TrainConfig, args)
    except (TypeError, ValueError) as exc:
        return fail(str(exc))
    if args.resume and args.overwrite:
        return fail("--resume continues the run in --out and --overwrite replaces it: pick one")
    found = existing_run(args.out)
    if found and not (args.resume or args.overwrite):
        return fail(
            f"{args.out} already holds a run ({', '.join(found)}): pass --resume to continue "
            "it, --overwrite to replace it, or choose another --out"
        )
    if not Path(args.demos).is_file():
        return fail(f"no demos file {args.demos}: collect one with `choicebc collect`")
    from choicebc.demoset import DemoSet
    from choicebc.train import train_bc

    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return fail(f"cannot write to --out {args.out}: {exc.strerror or exc}")
    try:
        demos = DemoSet.load(args.demos)
        if args.overwrite:
            _clear_run(out)
        train_bc(demos, out=out, resume=args.resume, progress=not args.no_progress, config=cfg)
    except (ValueError, OSError) as exc:  # DemoFileError, ChoiceError, too little data...
        return fail(str(exc))
    print(f"policy saved to {out / 'policy'}")
    return 0


def _clear_run(out: Path) -> None:
    import shutil

    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
