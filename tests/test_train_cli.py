"""`choicebc train` as a user meets it: existing runs, too little or bad data, crash-safe
checkpoints; every error one line on stderr with exit code 2."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from choicebc.envs import POINT_REACH_ID, PointReachExpert

import choicebc as cb
from choicebc.checkpoint_folder import MARKER
from choicebc.cli import main
from choicebc.train import TrainConfig, train_bc

FAST = ["--steps", "40", "--batch-size", "16", "--hidden", "8", "--log-every", "20"]
FAST += ["--checkpoint-every", "20", "--no-progress", "--choice", "step"]


@pytest.fixture(scope="module")
def demos_file(tmp_path_factory):
    expert = PointReachExpert()
    demos = cb.collect(
        POINT_REACH_ID,
        expert,
        cb.make_adversary("flipped", expert),
        ratio=0.3,
        episodes=6,
        seed=0,
        progress=False,
    )
    path = tmp_path_factory.mktemp("demos") / "pr.h5"
    demos.save(path)
    return path


def run(args, capsys):
    code = main(["train", *args])
    return code, capsys.readouterr()


def test_an_existing_run_is_kept_unless_overwrite_or_resume(demos_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = run(["--demos", str(demos_file), "--out", str(out), *FAST], capsys)
    assert code == 0
    before = (out / "policy" / "model.safetensors").read_bytes()
    code, io = run(["--demos", str(demos_file), "--out", str(out), *FAST, "--seed", "1"], capsys)
    assert code == 2 and "already holds a run" in io.err and "--overwrite" in io.err
    assert len(io.err.strip().splitlines()) == 1
    assert (out / "policy" / "model.safetensors").read_bytes() == before
    args = ["--demos", str(demos_file), "--out", str(out), *FAST, "--seed", "1", "--overwrite"]
    code, _ = run(args, capsys)
    assert code == 0 and (out / "policy" / "model.safetensors").read_bytes() != before
    code, _ = run(["--demos", str(demos_file), "--out", str(out), *FAST, "--resume"], capsys)
    assert code == 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no demos file"),
        ("one_transition", "at least 2 transitions"),
        ("nan", "NaN or inf"),
    ],
)
def test_bad_data_is_a_one_line_error_and_leaves_no_run(case, message, tmp_path, capsys):
    path = tmp_path / "d.h5"
    if case != "missing":
        expert = PointReachExpert()
        demos = cb.collect(
            POINT_REACH_ID, expert, expert, ratio=0.0, episodes=1, seed=0, progress=False
        )
        if case == "one_transition":
            demos = demos.filter(np.arange(demos.num_transitions) == 0)
        else:
            demos.observations[3, 0] = np.nan
        _save_unchecked(demos, path)
    out = tmp_path / "run"
    code, io = run(["--demos", str(path), "--out", str(out), *FAST], capsys)
    assert code == 2 and message in io.err
    assert len(io.err.strip().splitlines()) == 1 and "Traceback" not in io.err
    assert not (out / "tb").exists() and not (out / "checkpoint").exists()


def _save_unchecked(demos, path):
    """Write a set whose arrays a DemoSet would refuse (NaN): through h5py after a clean save."""
    import h5py

    nan_rows = ~np.isfinite(demos.observations).all(1)
    demos.observations[nan_rows] = 0.0
    demos.save(path)
    if nan_rows.any():
        with h5py.File(path, "r+") as f:
            obs = f["data/demo_0/obs"][:]
            obs[np.flatnonzero(nan_rows)[0], 0] = np.nan
            f["data/demo_0/obs"][...] = obs


def test_a_leftover_old_or_tmp_checkpoint_never_blocks_or_loses_the_resume_point(
    demos_file, tmp_path
):
    demos = cb.DemoSet.load(demos_file)
    cfg = TrainConfig(steps=40, batch_size=16, hidden=(8,), checkpoint_every=20, choice="step")
    out = tmp_path / "run"
    full = train_bc(demos, config=cfg, out=out, progress=False)
    ckpt = out / "checkpoint"
    # a crash between the two renames: only checkpoint.old is complete
    shutil.copytree(ckpt, out / "checkpoint.old")
    shutil.rmtree(ckpt)
    (out / "checkpoint.tmp").mkdir()  # and a half-written copy
    resumed = train_bc(demos, config=cfg, out=out, resume=True, progress=False)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not (out / "checkpoint.old").exists() and not (out / "checkpoint.tmp").exists()
    # later checkpoints work with leftovers present
    shutil.copytree(ckpt, out / "checkpoint.old")
    train_bc(demos, config=cfg, out=out, progress=False)
    assert (ckpt / MARKER).is_file() and not (out / "checkpoint.old").exists()


def test_a_checkpoint_of_an_older_version_is_adopted_on_resume(demos_file, tmp_path):
    demos = cb.DemoSet.load(demos_file)
    cfg = TrainConfig(steps=40, batch_size=16, hidden=(8,), checkpoint_every=20, choice="step")
    out = tmp_path / "run"
    train_bc(demos, config=cfg, out=out, progress=False)
    (out / "checkpoint" / MARKER).unlink()  # as written before the marker existed
    resumed = train_bc(demos, config=cfg, out=out, resume=True, progress=False)
    assert resumed is not None and (out / "checkpoint" / MARKER).is_file()
