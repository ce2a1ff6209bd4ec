"""``choicebc demos score|filter`` and ``DemoSet.filter``: the score-inspect-filter loop."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from choicebc.envs import POINT_REACH_ID, PointReachExpert

import choicebc as cb
from choicebc.cli import main
from choicebc.demoset import DemoFormatError, DemoSet
from choicebc.demoset_cli import QualityError, filter_file, read_quality, score_file
from choicebc.policy import BCPolicy


@pytest.fixture(scope="module")
def flipped(tmp_path_factory, point_reach_flipped):
    """PointReach demos, 30 % of the steps flipped (a = -expert), and a ChoiceNet policy."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("demos")
    demos = point_reach_flipped
    demos.save(folder / "d.h5")
    cfg = cb.TrainConfig(hidden=(32, 32), batch_size=128, log_every=10**6)
    policy = cb.train_bc(demos, head="choicenet", steps=300, seed=0, progress=False, config=cfg)
    policy.save(folder / "policy")
    return folder, demos, policy


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_demos() -> DemoSet:
    """Two episodes (lengths 4 and 3) with distinct observations 0..6 and rewards 1..7."""
    episodes = []
    for start, t, term in ((0, 4, True), (4, 3, False)):
        idx = np.arange(start, start + t, dtype=np.float32)
        episodes.append(
            {
                "obs": np.stack([idx, -idx], 1),
                "actions": np.stack([idx, idx], 1) / 10,
                "rewards": idx + 1.0,
                "terminated": np.arange(t) == t - 1 if term else np.zeros(t, bool),
                "truncated": np.zeros(t, bool) if term else np.arange(t) == t - 1,
                "final_obs": np.array([100.0 + start, 0.0], np.float32),
                "is_corrupt": idx % 2 == 1,
                "seed": 10 + start,
            }
        )
    return DemoSet.from_episodes(episodes, {"env_id": POINT_REACH_ID})


# ----------------------------------------------------------------------------- score
def test_quality_separates_flipped_steps(flipped):
    _, demos, policy = flipped
    from sklearn.metrics import roc_auc_score

    quality = policy.data_quality(demos)
    assert roc_auc_score(~demos.is_corrupt, quality) >= 0.95


def test_score_writes_a_copy_and_keeps_the_original(flipped, tmp_path, capsys):
    folder, demos, policy = flipped
    before = sha(folder / "d.h5")
    out = tmp_path / "scored.h5"
    assert (
        main(
            [
                "demos",
                "score",
                "--policy",
                str(folder / "policy"),
                "--demos",
                str(folder / "d.h5"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "ROC AUC" in printed
    auc = float(printed.split("expert from corrupt steps): ")[1].split()[0])
    assert auc >= 0.95
    assert sha(folder / "d.h5") == before
    with h5py.File(folder / "d.h5") as f:
        assert "quality" not in f["data/demo_0"]
    # plain h5py reads the scores, per episode, in the DemoSet's order
    with h5py.File(out) as f:
        first = f["data/demo_0/quality"][()]
        assert f["data"].attrs["quality_auc"] == pytest.approx(auc, abs=1e-4)
    np.testing.assert_allclose(read_quality(out), policy.data_quality(demos), rtol=1e-6)
    assert first.shape == (demos.episode_lengths[0],)
    # the copy is still the input DemoSet, plus the quality_* attributes and demo scores
    # (no per-demo AUC: step mixing leaves no episode with adversary share >= 0.5)
    copy = DemoSet.load(out)
    assert {k for k in copy.attrs if k not in demos.attrs} == {
        "quality_auc",
        "quality_kind",
        "quality_policy",
    }
    np.testing.assert_allclose(copy.demo_quality, policy.demo_quality(demos), rtol=1e-6)
    assert "per-demo ROC AUC: n/a" in printed
    copy.attrs = {k: v for k, v in copy.attrs.items() if not k.startswith("quality_")}
    copy.demo_quality = None
    assert copy.equals(DemoSet.load(folder / "d.h5"))
    # re-scoring onto an existing file needs --overwrite
    assert (
        main(
            [
                "demos",
                "score",
                "--policy",
                str(folder / "policy"),
                "--demos",
                str(folder / "d.h5"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "exists" in capsys.readouterr().err


def test_score_rejects_missing_policy_and_mismatched_dims(flipped, tmp_path, capsys):
    folder, _, _ = flipped
    args = ["demos", "score", "--demos", str(folder / "d.h5"), "--out", str(tmp_path / "s.h5")]
    assert main([*args, "--policy", str(tmp_path / "no-policy")]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    BCPolicy(3, 2, head="choicenet", hidden=(8,)).save(tmp_path / "wrong")
    assert main([*args, "--policy", str(tmp_path / "wrong")]) == 2
    assert "obs_dim=3" in capsys.readouterr().err
    with pytest.raises(QualityError, match="trained on HalfCheetah-v5"):
        BCPolicy(2, 2, head="choicenet", hidden=(8,), env_id="HalfCheetah-v5").save(
            tmp_path / "other"
        )
        score_file(tmp_path / "other", folder / "d.h5", tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


def test_score_errors_name_the_demos_file(flipped, tmp_path, capsys):
    folder, demos, _ = flipped
    path = folder / "d.h5"
    args = ["demos", "score", "--demos", str(path), "--out", str(tmp_path / "s.h5")]
    BCPolicy(3, 2, head="choicenet", hidden=(8,)).save(tmp_path / "wrong")
    assert main([*args, "--policy", str(tmp_path / "wrong")]) == 2
    assert f"the demos in {path} have obs_dim=2" in one_line_error(capsys)
    BCPolicy(2, 2, head="mse", hidden=(8,)).save(tmp_path / "mse")
    assert main([*args, "--policy", str(tmp_path / "mse")]) == 2
    assert f"cannot score {path} with policy {tmp_path / 'mse'}: head 'mse'" in (
        one_line_error(capsys)
    )
    nan = tmp_path / "nan.h5"
    observations = demos.observations.copy()
    observations[3, 0] = np.nan
    dataclasses.replace(demos, observations=observations).save(nan)
    args = ["demos", "score", "--demos", str(nan), "--out", str(tmp_path / "s.h5")]
    assert main([*args, "--policy", str(folder / "policy")]) == 2
    assert f"cannot score {nan} with policy {folder / 'policy'}: observations contain NaN" in (
        one_line_error(capsys)
    )
    assert not (tmp_path / "s.h5").exists()


def test_score_and_filter_check_the_out_path_before_the_work(
    flipped, tmp_path, read_only_folder, capsys
):
    folder, _, _ = flipped
    out = read_only_folder / "s.h5"
    score = ["demos", "score", "--demos", str(folder / "d.h5"), "--policy", str(folder / "policy")]
    assert main([*score, "--out", str(out)]) == 2
    assert f"cannot write {out}: cannot write to folder" in one_line_error(capsys)
    assert main([*score, "--out", str(tmp_path / "s.h5")]) == 0
    capsys.readouterr()
    filter_ = ["demos", "filter", "--demos", str(tmp_path / "s.h5"), "--min-quality", "0.5"]
    assert main([*filter_, "--out", str(out)]) == 2
    assert f"cannot write {out}: cannot write to folder" in one_line_error(capsys)


def test_info_warns_about_nan_and_inf(tmp_path, capsys):
    demos = small_demos()
    demos.observations[1, 0] = np.nan
    demos.actions[[2, 5], 1] = np.inf
    demos.rewards[6] = -np.inf
    path = demos.save(tmp_path / "bad.h5")
    for flags in ([], ["--json"]):
        assert main(["demos", "info", str(path), *flags]) == 0
        out, err = capsys.readouterr()
        assert err == (
            f"warning: {path} holds NaN or inf values (observations in 1 step, actions in 2 "
            "steps, rewards in 1 step): collect it again or drop those episodes before training "
            "on it\n"
        )
    small_demos().save(tmp_path / "good.h5")
    assert main(["demos", "info", str(tmp_path / "good.h5")]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- DemoSet.filter
def test_filter_keeps_the_right_rows_and_splits_runs():
    demos = small_demos()
    keep = np.array([True, True, False, True, False, True, True])
    kept = demos.filter(keep)
    np.testing.assert_array_equal(kept.observations, demos.observations[keep])
    np.testing.assert_array_equal(kept.actions, demos.actions[keep])
    np.testing.assert_array_equal(kept.is_corrupt, demos.is_corrupt[keep])
    # runs: rows {0,1}, {3} (end of episode 0), {5,6} (end of episode 1)
    np.testing.assert_array_equal(kept.episode_lengths, [2, 1, 2])
    np.testing.assert_array_equal(kept.final_observations[:, 0], [2.0, 100.0, 104.0])
    # run {0,1} was cut (truncated); episode 0 terminated at row 3; episode 1 was truncated
    np.testing.assert_array_equal(kept.truncated, [False, True, False, False, True])
    np.testing.assert_array_equal(kept.terminated, [False, False, True, False, False])
    np.testing.assert_allclose(kept.episode_returns, [1 + 2, 4, 6 + 7])
    np.testing.assert_array_equal(kept.episode_seeds, [10, -1, -1])
    # transitions keep their true next observation
    nxt = demos.next_observations[keep]
    np.testing.assert_array_equal(kept.next_observations, nxt)


def test_filter_episodes_keeps_whole_episodes_unchanged():
    demos = small_demos()
    kept = demos.filter_episodes(np.array([False, True]))
    ep = demos.episode(1)
    np.testing.assert_array_equal(kept.observations, ep["obs"])
    assert kept.episode_returns[0] == ep["return"] and kept.episode_seeds[0] == ep["seed"]
    np.testing.assert_array_equal(kept.truncated, ep["truncated"])
    with pytest.raises(DemoFormatError, match="keeps no"):
        demos.filter(np.zeros(7, bool))
    with pytest.raises(DemoFormatError, match="bool mask"):
        demos.filter(np.ones(3, bool))


def scored_small(tmp_path, quality) -> str:
    path = tmp_path / "small.h5"
    small_demos().save(path)
    with h5py.File(path, "r+") as f:
        f["data/demo_0"].create_dataset("quality", data=np.asarray(quality[:4], np.float32))
        f["data/demo_1"].create_dataset("quality", data=np.asarray(quality[4:], np.float32))
    return str(path)


def test_filter_command_steps_and_episodes(tmp_path, capsys):
    quality = np.array([0.9, 0.8, 0.1, 0.5, 0.2, 0.7, 0.95])
    path = scored_small(tmp_path, quality)
    out = tmp_path / "clean.h5"
    assert (
        main(["demos", "filter", "--demos", path, "--min-quality", "0.5", "--out", str(out)]) == 0
    )
    kept = DemoSet.load(out)
    np.testing.assert_array_equal(kept.observations, small_demos().observations[quality >= 0.5])
    assert kept.attrs["min_quality"] == 0.5 and kept.attrs["filter_mode"] == "steps"
    np.testing.assert_allclose(read_quality(out), quality[quality >= 0.5], rtol=1e-6)
    assert "kept 5 of 7 steps" in capsys.readouterr().out
    # episodes: means 0.575 and 0.617 -> q = 0.6 keeps only episode 1
    kept = filter_file(path, 0.6, tmp_path / "ep.h5", episodes=True)
    np.testing.assert_array_equal(kept.episode_lengths, [3])
    assert kept.observations[0, 0] == 4.0


def test_filter_episodes_by_their_first_steps(tmp_path, capsys):
    # episode 0 starts low (0.1, 0.2) then high; episode 1 starts high then low
    quality = np.array([0.1, 0.2, 0.95, 0.95, 0.9, 0.7, 0.0])
    path = scored_small(tmp_path, quality)
    # whole-episode means 0.55 and 0.533: q = 0.54 keeps episode 0
    whole = filter_file(path, 0.54, tmp_path / "whole.h5", episodes=True)
    assert whole.observations[0, 0] == 0.0 and whole.num_episodes == 1
    # first 2 steps: means 0.15 and 0.8 -> q = 0.54 keeps episode 1, whole and unchanged
    out = tmp_path / "first.h5"
    args = ["demos", "filter", "--demos", path, "--min-quality", "0.54", "--out", str(out)]
    assert main([*args, "--episodes", "--first-steps", "2"]) == 0
    kept = DemoSet.load(out)
    np.testing.assert_array_equal(kept.observations, small_demos().observations[4:])
    assert kept.attrs["first_steps"] == 2 and kept.attrs["filter_mode"] == "episodes"
    assert "scored by their first 2 steps" in capsys.readouterr().out
    # k longer than an episode averages all of it: k = 10 is the whole-episode mean
    longer = filter_file(path, 0.54, tmp_path / "k10.h5", episodes=True, first_steps=10)
    assert longer.observations[0, 0] == 0.0 and longer.num_episodes == 1
    # --first-steps without --episodes, or < 1: a clear error, nothing written
    bad = [*args[:-1], str(tmp_path / "bad.h5")]
    assert main([*bad, "--first-steps", "2"]) == 2
    assert "add --episodes" in capsys.readouterr().err
    assert main([*bad, "--episodes", "--first-steps", "0"]) == 2
    assert "integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "bad.h5").exists()


def test_filter_rejects_bad_inputs(tmp_path, capsys):
    path = scored_small(tmp_path, np.full(7, 0.5))
    base = ["demos", "filter", "--demos", path, "--out", str(tmp_path / "o.h5")]
    for q in ("1.5", "-0.1"):
        assert main([*base, "--min-quality", q]) == 2
        assert "must be in [0, 1]" in capsys.readouterr().err
    assert main([*base, "--min-quality", "0.9"]) == 2
    assert "lower --min-quality" in capsys.readouterr().err
    unscored = tmp_path / "raw.h5"
    small_demos().save(unscored)
    assert (
        main(
            [
                "demos",
                "filter",
                "--demos",
                str(unscored),
                "--min-quality",
                "0.5",
                "--out",
                str(tmp_path / "o.h5"),
            ]
        )
        == 2
    )
    assert "demos score" in capsys.readouterr().err
    assert main(["demos", "filter", "--demos", path, "--min-quality", "0.1", "--out", path]) == 2
    assert not (tmp_path / "o.h5").exists()


# ----------------------------------------------------------------------------- per-demo scores
def test_score_writes_demo_quality_and_its_roc_auc(flipped, tmp_path, capsys):
    """Whole flipped episodes: each demo's score, and the AUC against adversary share >= 0.5."""
    folder, _, policy = flipped
    demos = cb.collect(
        POINT_REACH_ID,
        PointReachExpert(),
        "flipped",
        ratio=0.3,
        mix="episode",
        episodes=12,
        seed=1,
        progress=False,
    )
    path = demos.save(tmp_path / "ep.h5")
    out = tmp_path / "ep.scored.h5"
    args = ["demos", "score", "--policy", str(folder / "policy"), "--demos", str(path)]
    assert main(args) == 0  # default output name: NAME.scored.h5
    printed = capsys.readouterr().out
    expected = policy.demo_quality(demos)
    corrupt = demos.adversary_share >= 0.5
    assert 0 < corrupt.sum() < demos.num_episodes
    auc = float(printed.split("corrupt = adversary share >= 0.5): ")[1].split()[0])
    from sklearn.metrics import roc_auc_score

    assert auc == pytest.approx(roc_auc_score(~corrupt, expected), abs=1e-4)
    assert auc >= 0.9
    with h5py.File(out) as f:
        stored = [f[f"data/demo_{i}"].attrs["demo_quality"] for i in range(demos.num_episodes)]
        assert f["data"].attrs["demo_quality_auc"] == pytest.approx(auc, abs=1e-4)
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    # filter by it: whole demos with demo_quality >= 0.5, carrying their scores along
    clean = tmp_path / "clean.h5"
    filt = ["demos", "filter", "--demos", str(out), "--out", str(clean), "--by", "demo"]
    assert main([*filt, "--min-quality", "0.5"]) == 0
    kept = DemoSet.load(clean)
    keep = expected >= 0.5
    np.testing.assert_array_equal(kept.actions, DemoSet.load(out).filter_episodes(keep).actions)
    np.testing.assert_allclose(kept.demo_quality, expected[keep], rtol=1e-6)
    np.testing.assert_array_equal(kept.episode_lengths, demos.episode_lengths[keep])
    assert kept.attrs["filter_by"] == "demo" and "demo_quality_auc" not in kept.attrs
    assert "by demo_quality" in capsys.readouterr().out


def with_demo_quality(path, scores) -> None:
    with h5py.File(path, "r+") as f:
        for i, q in enumerate(scores):
            f[f"data/demo_{i}"].attrs["demo_quality"] = q


def test_filter_by_demo_quality(tmp_path, capsys):
    # per-step means (0.6, 0.2) disagree with the per-demo scores (0.3, 0.8)
    path = scored_small(tmp_path, np.array([0.6, 0.6, 0.6, 0.6, 0.2, 0.2, 0.2]))
    base = ["demos", "filter", "--demos", path, "--min-quality", "0.5"]
    assert main([*base, "--by", "demo", "--out", str(tmp_path / "o.h5")]) == 2
    assert "no per-demo scores" in capsys.readouterr().err
    with_demo_quality(path, [0.3, 0.8])
    kept = filter_file(path, 0.5, tmp_path / "demo.h5", by="demo")
    np.testing.assert_array_equal(kept.observations, small_demos().observations[4:])
    np.testing.assert_allclose(read_quality(tmp_path / "demo.h5"), [0.2, 0.2, 0.2])
    by_steps = filter_file(path, 0.5, tmp_path / "steps.h5", episodes=True)
    np.testing.assert_array_equal(by_steps.observations, small_demos().observations[:4])
    # the episode mean of an explicitly --by step filter says the other score exists
    assert main([*base, "--episodes", "--out", str(tmp_path / "s2.h5")]) == 0
    assert "--by demo filters by them" in capsys.readouterr().out
    assert main([*base, "--by", "demo", "--first-steps", "2", "--out", str(tmp_path / "x")]) == 2
    assert "drop it with --by demo" in capsys.readouterr().err


# ----------------------------------------------------------------------------- masks
def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_filter_write_mask_marks_the_kept_demos_in_the_input(tmp_path, capsys):
    quality = np.array([0.1, 0.2, 0.3, 0.2, 0.9, 0.8, 0.9])
    path = scored_small(tmp_path, quality)
    original = DemoSet.load(path)
    args = ["demos", "filter", "--demos", path, "--min-quality", "0.5"]
    assert main([*args, "--episodes", "--write-mask", "clean"]) == 0
    assert "wrote mask/clean (1 of 2 demos)" in capsys.readouterr().out
    # robomimic's own reading of a filter key
    with h5py.File(path) as f:
        assert [e.decode("utf-8") for e in np.array(f["mask/clean"][:])] == ["demo_1"]
        assert f["mask/clean"].dtype.kind == "S"
    assert DemoSet.load(path).equals(original)  # the demos themselves are untouched
    assert DemoSet.load(path, mask="clean").equals(original.filter_episodes(np.array([0, 1], bool)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.h5"]
    # an existing mask without --overwrite: exit 2, one line, the file byte for byte unchanged
    before = sha(Path(path))
    assert main([*args, "--episodes", "--write-mask", "clean"]) == 2
    assert "already has mask/clean: pass --overwrite" in one_line_error(capsys)
    assert sha(Path(path)) == before
    # --write-mask needs whole episodes
    assert main([*args, "--write-mask", "steps"]) == 2
    assert "--write-mask names whole demos: add --episodes" in one_line_error(capsys)
    assert main([*args, "--episodes", "--write-mask", "bad/name"]) == 2
    assert "mask name 'bad/name'" in one_line_error(capsys)
    assert sha(Path(path)) == before
    # --overwrite replaces it; with --out the copy is written as well
    low = ["demos", "filter", "--demos", path, "--min-quality", "0.1", "--episodes"]
    out = tmp_path / "all.h5"
    assert main([*low, "--write-mask", "clean", "--overwrite", "--out", str(out)]) == 0
    with h5py.File(path) as f:
        assert [e.decode() for e in f["mask/clean"][:]] == ["demo_0", "demo_1"]
    assert DemoSet.load(out).num_episodes == 2
    # nowhere to write: a clear error
    assert main(low) == 2
    assert "--out FILE and/or --write-mask NAME" in one_line_error(capsys)


def test_filter_mask_writes_the_named_subset(tmp_path, capsys):
    quality = np.array([0.1, 0.2, 0.3, 0.2, 0.9, 0.8, 0.9])
    path = scored_small(tmp_path, quality)
    with_demo_quality(path, [0.1, 0.95])
    from choicebc.demoset import write_mask

    write_mask(path, "second", ["demo_1"])
    out = tmp_path / "subset.h5"
    assert main(["demos", "filter", "--demos", path, "--mask", "second", "--out", str(out)]) == 0
    assert "kept 1 of 2 demos in mask/second" in capsys.readouterr().out
    subset = DemoSet.load(out)
    np.testing.assert_array_equal(subset.observations, small_demos().observations[4:])
    np.testing.assert_allclose(read_quality(out), quality[4:])  # per-step scores carried
    assert subset.demo_quality.tolist() == [0.95]
    assert subset.attrs["mask"] == "second" and subset.attrs["filter_mode"] == "mask"
    base = ["demos", "filter", "--demos", path]
    assert main([*base, "--mask", "nope", "--out", str(tmp_path / "n.h5")]) == 2
    assert "no mask 'nope' (its masks: second)" in one_line_error(capsys)
    assert main([*base, "--mask", "second", "--min-quality", "0.5", "--out", str(out)]) == 2
    assert "drop --min-quality" in one_line_error(capsys)
    assert main([*base, "--mask", "second"]) == 2
    assert "add --out FILE" in one_line_error(capsys)
    assert main([*base, "--out", str(tmp_path / "q.h5")]) == 2
    assert "give --min-quality q" in one_line_error(capsys)
    assert not (tmp_path / "n.h5").exists() and not (tmp_path / "q.h5").exists()
