"""The `choicebc` entry point: fast --help, one default per help line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from choicebc.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "mujoco", "gymnasium", "matplotlib", "stable_baselines3", "sklearn")

# verb -> the heavy modules its --help may load (its module needs them at its top)
ALLOWED = {
    "": (),
    "quickstart": (),
    "expert train": ("mujoco", "gymnasium"),  # choicebc.experts lists the tasks (choicebc.envs)
    "expert eval": ("mujoco", "gymnasium"),
    "collect": ("mujoco", "gymnasium"),
    "demos": (),
    "evaluate": ("mujoco", "gymnasium"),
    "plot": (),
    "bench": (),
    "bench train": (),
    "report": (),
    "train": (),
}


def heavy_modules_after_help(verb: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after ``choicebc VERB --help``."""
    code = (
        "import sys\n"
        "from choicebc.cli import main\n"
        "try:\n"
        f"    main({verb.split()!r} + ['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "usage: choicebc" in done.stdout
    return done.stderr.split()


@pytest.mark.parametrize("verb", list(ALLOWED))
def test_help_loads_no_heavy_library_it_does_not_need(verb):
    loaded = heavy_modules_after_help(verb)
    assert set(loaded) <= set(ALLOWED[verb]), f"choicebc {verb} --help imported {loaded}"


def test_import_choicebc_loads_nothing_heavy_and_names_resolve_on_use():
    code = (
        "import sys, choicebc as cb\n"
        f"assert not [m for m in {HEAVY!r} if m in sys.modules], sys.modules.keys()\n"
        "import choicebc.collect\n"  # the submodule named like the function
        "assert callable(cb.collect) and cb.collect.__module__ == 'choicebc.collect'\n"
        "assert cb.DemoSet.__name__ == 'DemoSet' and cb.evaluate.__name__ == 'evaluate'\n"
        "assert set(cb.__all__) <= set(dir(cb))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_option_states_its_default_once():
    parser = build_parser(COMMANDS)
    seen = 0
    for name, sub in _subparsers(parser):
        for action in sub._actions:
            text = (action.help or "").lower()
            assert text.count("(default:") <= 1, f"choicebc {name} {action.option_strings}: {text}"
            seen += "(default:" in text
    assert seen > 50  # the generator did run over the dataclasses


def test_a_docstring_that_states_its_default_keeps_only_its_own(capsys):
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: the shipped expert of ENV_ID)" in out
    assert "(default: the shipped expert of ENV_ID) (default" not in out
    assert "(default: up to 256) (default" not in out
    assert "(default: None)" not in out  # e.g. --episodes, whose text says what absence means


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["colect"])
    assert exc.value.code == 2
    assert "invalid choice: 'colect'" in capsys.readouterr().err
