"""Crash-safe file writes: every file choicebc writes goes through here.

A file is written whole under a hidden temporary name beside its target
(``.<name>.<pid>.<8 hex>.tmp``) and renamed over the target when complete, so a reader (or a
resumed run) sees the old file or the new one, never half of one. A writer killed mid-write
leaves its temporary file behind; the next write to the same target deletes it
(:func:`remove_stale_temp_files`), unless its writer process is still alive.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_name(path: str | os.PathLike, kind: str = "") -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>.<8 hex>[kind].tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{kind}.tmp")


def temp_beside(path: str | os.PathLike) -> Path:
    """A temporary name to write ``path`` through, after deleting stale ones left beside it."""
    remove_stale_temp_files(path)
    return temp_name(path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The parent folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(
    path: str | os.PathLike, data: Any, indent: int = 2, sort_keys: bool = False
) -> Path:
    """Write ``data`` as JSON (a trailing newline; NaN allowed) to ``path`` atomically."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=True) + "\n"
    return write_text_atomic(path, text)


def save_safetensors_atomic(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a torch state dict (contiguous tensors) as safetensors to ``path`` atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path`` atomically, never clobbering unless ``overwrite``.

    Raises:
        FileExistsError: ``path`` exists (or appeared while ``tmp`` was written) and
            ``overwrite`` is False.
    """
    tmp, path = Path(tmp), Path(path)
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if ``path`` appeared meanwhile: never clobber
    except FileExistsError:
        raise FileExistsError(
            f"{path} was created while saving: pass overwrite=True to replace it"
        ) from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise FileExistsError(f"{path} exists: pass overwrite=True to replace it") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left beside it.

    Only files named like choicebc's own temporary files for exactly this target
    (``.<name>.<pid>.<8 hex>.tmp`` or ``...probe.tmp``) are candidates, and only those whose
    writer process is gone: a file whose ``<pid>`` is a running process (on this machine) may
    belong to a save in progress and is kept. Errors are ignored: this is housekeeping, never
    a reason to fail a save.

    Returns:
        The files deleted.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}(?:\.probe)?\.tmp")
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            if entry.is_symlink() or not entry.is_file():
                continue
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # not a possible pid
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True
