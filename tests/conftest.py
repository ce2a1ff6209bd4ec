"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder in which no file can be created (``/sys`` when running as root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permission bits; sysfs refuses new files
        folder.chmod(0o755)
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no read-only folder to test with")
        yield Path("/sys")
        return
    try:
        yield folder
    finally:
        folder.chmod(0o755)
