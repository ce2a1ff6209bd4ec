"""``choicebc bench sim|train|collect``: each benchmark lives in its own module here.

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``, prints a markdown
table and writes JSON under ``results/``. ``scripts/bench_*.py`` are thin wrappers around them.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "sim": "choicebc.bench.sim",
    "train": "choicebc.bench.train",
    "collect": "choicebc.bench.collect",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="{sim,train,collect}", required=True)
    for name, module in BENCHMARKS.items():
        p = sub.add_parser(name, help=f"{name} benchmark")
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(BENCHMARKS[args.bench_command]).run(args) or 0)
