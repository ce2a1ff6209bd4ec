"""MuJoCo warnings: no MUJOCO_LOG.TXT in the user's folder, no settotalmass notice, others shown."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from choicebc.envs import MujocoWarning

import choicebc as cb


def test_simulating_leaves_no_log_file_and_hides_the_settotalmass_notice(tmp_path):
    code = (
        "import gymnasium as gym, numpy as np, choicebc as cb\n"
        "env = cb.make_batched('HalfCheetah-v5', num_envs=2, backend='cpu', seed=0)\n"
        "env.reset(); env.step(np.zeros((2, 6), np.float32))\n"
        "gym.make('HalfCheetah-v5').reset(seed=0)\n"
        "print('simulated')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "simulated" in done.stdout
    assert "settotalmass" not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # no MUJOCO_LOG.TXT


def test_other_mujoco_warnings_become_python_warnings():
    env = cb.make_batched("HalfCheetah-v5", num_envs=2, backend="cpu", seed=0)
    env.reset()
    env._qvel[:] = 1e30  # an exploding state: MuJoCo warns that the simulation is unstable
    with pytest.warns(MujocoWarning, match="simulation is unstable"):
        env.step(np.zeros((2, 6), np.float32))
