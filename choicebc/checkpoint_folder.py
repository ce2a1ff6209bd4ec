"""Crash-safe checkpoint folders: written beside, swapped in, the newest complete copy recovered.

A checkpoint is a flat folder ``NAME`` that counts as complete only once its marker
(:data:`MARKER`: the step and every file's size) is in it. :func:`save_checkpoint_folder` fills
``NAME.tmp``, writes the marker last, then swaps: ``NAME`` -> ``NAME.old``, ``NAME.tmp`` ->
``NAME``, deletes ``NAME.old``. A crash at any point leaves at least one complete copy among the
three, and :func:`recover_checkpoint_folder` keeps the newest as ``NAME`` and deletes the others,
so a leftover ``.tmp`` or ``.old`` never blocks a later save.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

MARKER = "complete.json"


def _tmp(folder: Path) -> Path:
    return folder.with_name(folder.name + ".tmp")


def _old(folder: Path) -> Path:
    return folder.with_name(folder.name + ".old")


def _fsync(path: Path) -> None:
    """Flush a file or a folder's entries to disk (a folder rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(folder: Path) -> None:
    """Delete a copy, its marker first: a deletion cut short leaves an incomplete copy."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_dir() and not folder.is_symlink():
        (folder / MARKER).unlink(missing_ok=True)
        shutil.rmtree(folder)
    else:
        folder.unlink()


def checkpoint_step(folder: str | Path) -> int | None:
    """The step of the complete checkpoint in ``folder``; ``None`` if missing or incomplete."""
    folder = Path(folder)
    try:
        marker = json.loads((folder / MARKER).read_text())
        step, files = marker["step"], marker["files"]
        if not isinstance(step, int) or not isinstance(files, dict):
            return None
        for name, size in files.items():
            path = folder / name
            if Path(name).name != name or not path.is_file() or path.stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step


def recover_checkpoint_folder(folder: str | Path) -> int | None:
    """Make ``folder`` the newest complete copy among ``folder``, ``.tmp`` and ``.old``.

    The other copies (complete or not) are deleted. Safe to call at any time, and again after
    a crash inside it.

    Returns:
        The recovered checkpoint's step, or ``None`` when no copy is complete (then none is left).
    """
    folder = Path(folder)
    copies = [folder, _tmp(folder), _old(folder)]
    steps = {copy: checkpoint_step(copy) for copy in copies}
    complete = [copy for copy in copies if steps[copy] is not None]
    if not complete:
        for copy in copies:
            _remove(copy)
        return None
    best = max(complete, key=lambda copy: steps[copy])  # a tie keeps ``folder`` (listed first)
    for copy in copies[1:]:
        if copy != best:
            _remove(copy)
    if best != folder:
        _remove(folder)
        os.replace(best, folder)
        _fsync(folder.parent)
    return steps[best]


def save_checkpoint_folder(folder: str | Path, step: int, write: Callable[[Path], None]) -> None:
    """Write a checkpoint of ``step`` into ``folder`` without ever losing the previous one.

    Args:
        folder: the checkpoint folder (its parent must exist).
        step: the training step the checkpoint holds (recovery keeps the highest).
        write: fills the empty folder it is given with files (no sub-folders).
    """
    folder = Path(folder)
    recover_checkpoint_folder(folder)  # clears leftovers of an earlier crash
    tmp, old = _tmp(folder), _old(folder)
    tmp.mkdir()
    write(tmp)
    files = {}
    for path in sorted(tmp.iterdir()):
        if not path.is_file() or path.is_symlink():
            raise ValueError(f"a checkpoint holds plain files only, got {path}")
        _fsync(path)
        files[path.name] = path.stat().st_size
    marker = tmp / MARKER
    with marker.open("w") as f:
        json.dump({"step": int(step), "files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync(tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync(folder.parent)
    _remove(old)
