"""``choicebc demos info PATH``: inspect a DemoSet file.

Each ``demos`` subcommand is one entry of :data:`SUBCOMMANDS`: ``(help, add_arguments, run)``;
a new one (``score``, ``filter``) is added by writing its two functions and registering them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np

from choicebc.demoset import DemoFileError, DemoSet


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


# name -> (help, add_arguments, run)
SUBCOMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "info": ("summary, attributes and episodes of a DemoSet file", add_info_arguments, info),
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
    except (DemoFileError, OSError) as exc:
        print(f"choicebc demos {args.demos_command}: {exc}", file=sys.stderr)
        return 2
