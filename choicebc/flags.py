"""Command-line flags from config dataclasses: one ``--flag`` per field, its docstring the help.

Every verb's settings are a dataclass (``TrainConfig``, ``CollectConfig``, ``ReportConfig``...);
:func:`add_dataclass_arguments` turns one into argparse flags and :func:`dataclass_from_args`
builds it back from the parsed arguments, as CleanRL's tyro does.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


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
