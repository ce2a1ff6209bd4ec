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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small nets on a shared 2-core machine: one torch thread avoids oversubscription stalls."""
    import torch  # noqa: F401  (torch_threads changes torch's setting only once it is loaded)

    from choicebc.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def point_reach_flipped():
    """PointReach demonstrations with 30 % of the steps flipped (a = -expert): 20 episodes,
    seed 0. Shared by every module that needs a small labelled set; do not modify it."""
    from choicebc.envs import POINT_REACH_ID, PointReachExpert

    import choicebc as cb

    settings = {"ratio": 0.3, "episodes": 20, "seed": 0, "progress": False}
    return cb.collect(POINT_REACH_ID, PointReachExpert(), "flipped", **settings)
