"""The ``choicebc`` command: one entry point that dispatches to its subcommands.

Each subcommand lives in the module that owns its feature; that module exposes
``add_arguments(parser)`` and ``run(args) -> int`` (flags from config dataclasses:
:mod:`choicebc.flags`). This file only dispatches, and imports only
the module of the subcommand being run: ``choicebc --help`` loads no torch, MuJoCo or
matplotlib, and ``choicebc VERB --help`` only what VERB's module imports at its top.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("choicebc.quickstart", "collect, train ChoiceNet-BC and MSE-BC, evaluate"),
    "expert": ("choicebc.experts.cli", "train or evaluate an expert (expert train|eval)"),
    "collect": ("choicebc.collect", "record mixed expert/adversary demonstrations"),
    "demos": ("choicebc.demoset_cli", "inspect, score and filter demonstration files"),
    "train": ("choicebc.train_cli", "behaviour cloning with a robust head"),
    "evaluate": ("choicebc.evaluation_cli", "roll out a policy in the batched simulator"),
    "plot": ("choicebc.plots", "correlation maps and return curves"),
    "bench": ("choicebc.bench", "benchmarks: sim, train, collect"),
    "report": ("choicebc.report", "the robustness report over envs, adversaries and ratios"),
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``choicebc`` parser; only the subcommands in ``commands`` (default: all) get their
    arguments, and only their modules are imported."""
    wanted = set(COMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(
        prog="choicebc", description="Robust behaviour cloning from corrupted demonstrations."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name in wanted:
            importlib.import_module(module).add_arguments(p)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names: its first token that is not an option (``choicebc`` has
    no options of its own but ``-h``)."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    parser = build_parser([command] if command else [])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
