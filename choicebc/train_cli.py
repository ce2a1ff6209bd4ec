"""``choicebc train``: behaviour cloning from a DemoSet file into a run folder.

Torch-free at import (``choicebc train --help`` answers without loading torch); the run itself
is :func:`choicebc.train.train_bc`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from choicebc.flags import add_dataclass_arguments, dataclass_from_args
from choicebc.train_config import TrainConfig

RUN_FILES = ("policy", "checkpoint", "log.csv", "tb")
"""what a run folder holds (``choicebc train`` refuses to replace them without --overwrite)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
