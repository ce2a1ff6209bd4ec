"""The ``choicebc`` command: one entry point, subcommands generated from config dataclasses.

Each subcommand lives in the module that owns its feature; that module exposes
``add_arguments(parser)`` and ``run(args) -> int``. This file only dispatches, and imports only
the module of the subcommand being run: ``choicebc --help`` loads no torch, MuJoCo or
matplotlib, and ``choicebc VERB --help`` only what VERB's module imports at its top.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any

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


def _field_type(tp: Any) -> tuple[Any, bool]:
    """(argparse type, is_sequence) for a dataclass field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _field_type(args[0])
    if origin in (tuple, list):
        return typing.get_args(tp)[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple = ()) -> None:
    """Add one ``--flag`` per dataclass field; the field docstring (if any) is the help.

    Fields without a default become positional arguments.
    """
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, seq = _field_type(hints[f.name])
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if has_default else None)
        )
        name = f.name.replace("_", "-")
        # argparse %-formats help strings: a literal "50 %" in a docstring must be escaped
        kwargs: dict[str, Any] = {"help": docs.get(f.name, "").replace("%", "%%")}
        # a docstring that states its default in words ("(default: the shipped expert)") keeps
        # it, and a None default (the option is simply not given) is not spelled out
        if has_default and default is not None and "(default:" not in kwargs["help"].lower():
            kwargs["help"] += f" (default: {default})"
        if tp is bool:
            help_text = kwargs.pop("help")
            action = parser.add_argument(
                f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=""
            )
            action.help = help_text  # some Pythons' BooleanOptionalAction append the default too
            continue
        kwargs["type"] = tp
        if seq:
            kwargs["nargs"] = "+"
        if has_default:
            parser.add_argument(f"--{name}", default=default, dest=f.name, **kwargs)
        else:
            parser.add_argument(f.name, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """Build ``cls`` from parsed arguments (fields missing from ``args`` keep their defaults)."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            if isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
    values.update(overrides)
    return cls(**values)


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after a field), as CleanRL's tyro reads;
    a field inherited from a dataclass base has the base's docstring."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings written in ``cls``'s own body."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body else []
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


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
