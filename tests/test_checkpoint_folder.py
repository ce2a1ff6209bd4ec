"""Crash-safe checkpoint folders: every crash point of a save recovers the newest complete copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from choicebc.checkpoint_folder import (
    MARKER,
    checkpoint_step,
    recover_checkpoint_folder,
    save_checkpoint_folder,
)


def writer(step: int):
    def write(tmp: Path) -> None:
        (tmp / "weights.bin").write_bytes(bytes(range(step % 200)) * 10)
        (tmp / "state.json").write_text(f'{{"step": {step}}}')

    return write


def content(folder: Path) -> str:
    return (folder / "state.json").read_text()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


class Crash(Exception):
    pass


def crash_on_call(monkeypatch, module, name: str, n: int) -> None:
    """Make the n-th call of ``module.name`` raise, as a kill at that point would stop the save."""
    real, calls = getattr(module, name), []

    def patched(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise Crash(f"{name} call {n}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, patched)


def crash_while_writing(tmp: Path) -> None:
    (tmp / "weights.bin").write_bytes(b"half")
    raise Crash("killed while writing")


# crash point -> the step recovery must find (the save of step 2 over a checkpoint of step 1)
CRASH_POINTS = {
    "while writing the files": 1,
    "after the marker, before NAME -> NAME.old": 2,
    "between NAME -> NAME.old and NAME.tmp -> NAME": 2,
    "while deleting NAME.old": 2,
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_every_crash_point_recovers_the_newest_complete_copy(tmp_path, monkeypatch, point):
    folder = tmp_path / "checkpoint"
    save_checkpoint_folder(folder, 1, writer(1))
    write = writer(2)
    with monkeypatch.context() as m:
        if point == "while writing the files":
            write = crash_while_writing
        elif point == "after the marker, before NAME -> NAME.old":
            crash_on_call(m, os, "replace", 1)
        elif point == "between NAME -> NAME.old and NAME.tmp -> NAME":
            crash_on_call(m, os, "replace", 2)
        else:
            crash_on_call(m, shutil, "rmtree", 1)  # recovery before the save had nothing to delete
        with pytest.raises(Crash):
            save_checkpoint_folder(folder, 2, write)
    assert leftovers(folder), "the crash left no .tmp/.old: the test did not reach its point"
    expected = CRASH_POINTS[point]
    assert recover_checkpoint_folder(folder) == expected
    assert content(folder) == f'{{"step": {expected}}}'
    assert leftovers(folder) == []
    save_checkpoint_folder(folder, 3, writer(3))  # the next save works
    assert checkpoint_step(folder) == 3 and leftovers(folder) == []


def test_a_leftover_old_folder_does_not_block_the_next_save(tmp_path):
    folder = tmp_path / "checkpoint"
    save_checkpoint_folder(folder, 1, writer(1))
    old = tmp_path / "checkpoint.old"
    old.mkdir()
    (old / "stale.bin").write_bytes(b"x")  # not empty: os.replace onto it used to fail
    tmp = tmp_path / "checkpoint.tmp"
    tmp.mkdir()
    (tmp / "partial.bin").write_bytes(b"y")
    save_checkpoint_folder(folder, 2, writer(2))
    assert checkpoint_step(folder) == 2
    assert leftovers(folder) == []


def test_a_truncated_file_makes_a_copy_incomplete(tmp_path):
    folder = tmp_path / "checkpoint"
    save_checkpoint_folder(folder, 5, writer(5))
    assert checkpoint_step(folder) == 5
    (folder / "weights.bin").write_bytes(b"short")
    assert checkpoint_step(folder) is None
    (folder / MARKER).write_text("{not json")
    assert checkpoint_step(folder) is None
    assert recover_checkpoint_folder(folder) is None
    assert not folder.exists()
