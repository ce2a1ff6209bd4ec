"""``choicebc bench sim|train|collect``: each benchmark lives in its own module here.

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``, prints a markdown
table and writes JSON under ``results/``. ``scripts/bench_*.py`` are thin wrappers around them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time
from pathlib import Path
from typing import Any

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


def write_result(
    out: str | Path, args: argparse.Namespace, load_before: tuple, payload: dict[str, Any]
) -> dict[str, Any]:
    """Write ``payload`` + run metadata (machine, load, versions, args) to ``out`` atomically.

    The load average before and after is recorded because machines here are shared: a figure
    measured under load is only comparable to one measured under the same load.
    """
    import gymnasium
    import h5py
    import mujoco
    import numpy as np
    import torch

    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "versions": {
            "mujoco": mujoco.__version__,
            "gymnasium": gymnasium.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "h5py": h5py.__version__,
        },
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
    }
    from choicebc.atomic import write_json_atomic

    write_json_atomic(out, {"meta": meta, **payload})
    return meta
