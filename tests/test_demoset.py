"""DemoSet: plain-h5py layout, exact save/load and Minari round trips, atomic and safe writing."""

from __future__ import annotations

import argparse
import json
import os

import h5py
import numpy as np
import pytest

from choicebc import demoset as demoset_module
from choicebc import demoset_cli
from choicebc.demoset import DemoFileError, DemoFormatError, DemoSet


def synthetic_demos(seed: int = 0, episodes: int = 4, obs_dim: int = 3, act_dim: int = 2):
    """Episodes of different lengths, some corrupt steps, one terminated and one truncated end."""
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(episodes):
        t = 5 + 3 * i
        actions = rng.uniform(-1, 1, (t, act_dim)).astype(np.float32)
        corrupt = rng.random(t) < 0.4
        ends = np.zeros(t, bool)
        ends[-1] = True
        eps.append(
            {
                "obs": rng.standard_normal((t, obs_dim)).astype(np.float32),
                "actions": actions,
                "executed_actions": np.where(corrupt[:, None], -actions, actions),
                "rewards": rng.standard_normal(t),
                "terminated": ends if i % 2 == 0 else np.zeros(t, bool),
                "truncated": np.zeros(t, bool) if i % 2 == 0 else ends,
                "is_corrupt": corrupt,
                "final_obs": rng.standard_normal(obs_dim).astype(np.float32),
                "seed": 1000 + i,
            }
        )
    attrs = {
        "env_id": "Toy-v1",
        "env_version": "v1",
        "expert": "toy expert",
        "adversary": "toy adversary",
        "adversary_kind": "flipped",
        "ratio": 0.4,
        "mix": "label",
        "seed": seed,
        "action_low": [-1.0] * act_dim,
        "action_high": [1.0] * act_dim,
        "has_labels": True,
    }
    return DemoSet.from_episodes(eps, attrs), eps


def test_flat_views_follow_the_episodes():
    demos, eps = synthetic_demos()
    lengths = [len(e["rewards"]) for e in eps]
    assert demos.episode_lengths.tolist() == lengths
    assert len(demos) == demos.num_transitions == sum(lengths)
    assert demos.episode_ids.tolist() == sum(([i] * n for i, n in enumerate(lengths)), [])
    assert demos.timesteps[: lengths[0] + 2].tolist() == [*range(lengths[0]), 0, 1]
    np.testing.assert_array_equal(demos.observations[lengths[0]], eps[1]["obs"][0])
    # next observation: the following row inside an episode, final_obs at its end
    nxt = demos.next_observations
    np.testing.assert_array_equal(nxt[0], eps[0]["obs"][1])
    np.testing.assert_array_equal(nxt[lengths[0] - 1], eps[0]["final_obs"])
    np.testing.assert_array_equal(nxt[-1], eps[-1]["final_obs"])
    shares = [e["is_corrupt"].mean() for e in eps]
    np.testing.assert_allclose(demos.adversary_share, shares)
    # default return: the rewards summed in step order
    np.testing.assert_array_equal(demos.episode_returns, [np.cumsum(e["rewards"])[-1] for e in eps])
    ep2 = demos.episode(2)
    np.testing.assert_array_equal(ep2["executed_actions"], eps[2]["executed_actions"])
    assert ep2["seed"] == 1002
    assert demos.action_low.tolist() == [-1.0, -1.0]


def test_summary_reports_counts_share_and_returns():
    demos, eps = synthetic_demos()
    s = demos.summary()
    returns = np.array([np.cumsum(e["rewards"])[-1] for e in eps])
    assert (s.episodes, s.transitions) == (4, sum(len(e["rewards"]) for e in eps))
    assert s.corrupt_share == pytest.approx(np.concatenate([e["is_corrupt"] for e in eps]).mean())
    assert s.mean_return == pytest.approx(returns.mean())
    assert s.min_return == pytest.approx(returns.min())
    assert "4 episodes" in str(s) and f"{s.corrupt_share:.1%}" in str(s)


def test_save_load_round_trip_is_exact(tmp_path):
    demos, _ = synthetic_demos()
    path = demos.save(tmp_path / "demos.h5")
    loaded = DemoSet.load(path)
    assert loaded.equals(demos)
    for name in ("observations", "actions", "rewards", "is_corrupt", "episode_seeds"):
        assert getattr(loaded, name).dtype == getattr(demos, name).dtype
    assert loaded.attrs == demos.attrs
    # equals() is not vacuous: one flipped label makes a difference
    loaded.is_corrupt[3] = ~loaded.is_corrupt[3]
    assert not loaded.equals(demos)


def test_file_reads_with_plain_h5py(tmp_path):
    """A user without choicebc sees robomimic-like groups, datasets and attributes."""
    demos, eps = synthetic_demos()
    path = demos.save(tmp_path / "demos.h5")
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert sorted(data.keys()) == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert data.attrs["env_id"] == "Toy-v1"
        assert data.attrs["total"] == demos.num_transitions
        assert data.attrs["ratio"] == 0.4 and data.attrs["mix"] == "label"
        g = data["demo_1"]
        assert g["obs"].shape == eps[1]["obs"].shape and g["obs"].dtype == np.float32
        np.testing.assert_array_equal(g["actions"][()], eps[1]["actions"])
        np.testing.assert_array_equal(g["is_corrupt"][()], eps[1]["is_corrupt"])
        assert g["is_corrupt"].dtype == bool
        assert g.attrs["num_samples"] == len(eps[1]["rewards"])
        assert g.attrs["seed"] == 1001
        assert g.attrs["adversary_share"] == pytest.approx(eps[1]["is_corrupt"].mean())


def test_never_overwrites_unless_asked(tmp_path):
    demos, _ = synthetic_demos(seed=0)
    other, _ = synthetic_demos(seed=1)
    path = demos.save(tmp_path / "demos.h5")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(path)
    assert path.read_bytes() == before
    other.save(path, overwrite=True)
    assert DemoSet.load(path).equals(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demos.h5"]  # no temp files left


def test_interrupted_save_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    demos, _ = synthetic_demos()
    calls = {"n": 0}
    real = demoset_module._write_episode

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way through the file
        return real(*args, **kwargs)

    monkeypatch.setattr(demoset_module, "_write_episode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demos.save(tmp_path / "new.h5")
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(demoset_module, "_write_episode", real)
    old, _ = synthetic_demos(seed=7)
    path = old.save(tmp_path / "old.h5")
    before = path.read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(demoset_module, "_write_episode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demos.save(path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["old.h5"]


def test_missing_folder_is_a_clear_error(tmp_path):
    demos, _ = synthetic_demos()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        demos.save(tmp_path / "no" / "such" / "demos.h5")
    with pytest.raises(IsADirectoryError):
        demos.save(tmp_path)


def test_read_only_folder_is_a_clear_error(read_only_folder):
    demos, _ = synthetic_demos()
    path = read_only_folder / "demos.h5"
    with pytest.raises(PermissionError, match=f"cannot write {path}: cannot write to folder"):
        demos.save(path)
    assert not path.exists()


def test_load_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="choicebc collect"):
        DemoSet.load(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not an HDF5 file\n" * 100)
    with pytest.raises(DemoFileError, match="not a readable HDF5 file"):
        DemoSet.load(text)

    demos, _ = synthetic_demos()
    full = demos.save(tmp_path / "full.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(full[: len(full) // 2])  # a copy interrupted half-way
    with pytest.raises(DemoFileError):
        DemoSet.load(cut)

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(DemoFileError, match="no 'data' group"):
        DemoSet.load(other)

    broken = tmp_path / "broken.h5"
    broken.write_bytes(full)
    with h5py.File(broken, "a") as f:
        del f["data/demo_2/is_corrupt"]
    with pytest.raises(DemoFileError, match=r"demo_2 lacks \['is_corrupt'\]"):
        DemoSet.load(broken)


def test_inconsistent_arrays_are_rejected():
    _, eps = synthetic_demos()
    with pytest.raises(DemoFormatError, match="env_id"):
        DemoSet.from_episodes(eps, {"ratio": 0.1})
    bad = [dict(eps[0], actions=eps[0]["actions"][:-1])]
    with pytest.raises(DemoFormatError, match="actions"):
        DemoSet.from_episodes(bad, {"env_id": "Toy-v1"})
    with pytest.raises(DemoFormatError, match="attribute 'note'"):
        DemoSet.from_episodes(eps, {"env_id": "Toy-v1", "note": {"a": 1}})


def test_demos_info_cli(tmp_path, capsys):
    demos, _ = synthetic_demos()
    path = demos.save(tmp_path / "demos.h5")
    parser = argparse.ArgumentParser()
    demoset_cli.add_arguments(parser)
    assert demoset_cli.run(parser.parse_args(["info", str(path)])) == 0
    out = capsys.readouterr().out
    assert "4 episodes" in out and "adversary_kind: flipped" in out
    assert demoset_cli.run(parser.parse_args(["info", str(path), "--json"])) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["transitions"] == demos.num_transitions
    assert demoset_cli.run(parser.parse_args(["info", str(tmp_path / "nope.h5")])) == 2
    assert "no DemoSet file" in capsys.readouterr().err
    # operators, demo scores and masks are listed
    grouped = grouped_demos().save(tmp_path / "grouped.h5")
    demoset_module.write_mask(grouped, "clean", ["demo_0", "demo_2"])
    assert demoset_cli.run(parser.parse_args(["info", str(grouped)])) == 0
    out = capsys.readouterr().out
    assert "groups (operator: episodes): alice (2), bob (1), carol (1)" in out
    assert "demo_quality: mean 0.588, min 0.200, max 0.900" in out
    assert "masks: clean (2 demos)" in out


# ---------------------------------------------------------------------- Minari
@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_minari_export_import_round_trip_is_exact(minari_root):
    import minari
    from choicebc.envs import PointReachExpert

    from choicebc.collect import collect

    demos = collect(
        "choicebc/PointReach-v0", PointReachExpert(), "flipped", ratio=0.3, mix="label",
        episodes=5, num_envs=2, seed=3, progress=False,
    )  # fmt: skip
    with pytest.warns(UserWarning):  # Minari asks for an author etc.; we leave them to users
        demos.to_minari("choicebc/pointreach/flip30-v0")
    dataset = minari.load_dataset("choicebc/pointreach/flip30-v0")
    assert dataset.total_episodes == 5 and dataset.total_steps == demos.num_transitions
    ep = next(iter(dataset.iterate_episodes()))
    t = demos.episode_lengths[0]
    assert ep.observations.shape == (t + 1, 2)  # Minari's T + 1 observations
    np.testing.assert_array_equal(ep.infos["is_corrupt"][1:], demos.episode(0)["is_corrupt"])
    back = DemoSet.from_minari("choicebc/pointreach/flip30-v0")
    assert back.equals(demos)
    with pytest.raises(FileExistsError, match="delete_dataset"):
        demos.to_minari("choicebc/pointreach/flip30-v0")
    # per-episode operator ids and demo scores travel in the metadata
    grouped = DemoSet.from_episodes(
        demos.episodes(), demos.attrs, groups=list("aabba"), demo_quality=np.linspace(0, 1, 5)
    )
    with pytest.warns(UserWarning):
        grouped.to_minari("choicebc/pointreach/grouped-v0")
    assert DemoSet.from_minari("choicebc/pointreach/grouped-v0").equals(grouped)


def test_minari_import_of_foreign_data_has_no_labels(minari_root):
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    rng = np.random.default_rng(0)
    buffers = []
    for i, t in enumerate((4, 6)):
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=10 + i,
                observations=rng.standard_normal((t + 1, 3)),
                actions=rng.uniform(-1, 1, (t, 2)).astype(np.float32),
                rewards=rng.standard_normal(t),
                terminations=np.zeros(t, bool),
                truncations=np.arange(t) == t - 1,
                infos={},
            )
        )
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(
            "someone/toy/data-v0",
            buffers,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (3,)),
            action_space=gym.spaces.Box(-1, 1, (2,)),
        )
    with pytest.raises(DemoFormatError, match="env_id"):
        DemoSet.from_minari("someone/toy/data-v0")
    demos = DemoSet.from_minari("someone/toy/data-v0", env_id="Toy-v0")
    assert not demos.has_labels and demos.summary().corrupt_share is None
    assert demos.episode_lengths.tolist() == [4, 6]
    assert demos.episode_seeds.tolist() == [10, 11]
    # float64 observations become float32, the DemoSet's observation dtype
    np.testing.assert_array_equal(
        demos.final_observations[1], buffers[1].observations[-1].astype(np.float32)
    )
    np.testing.assert_allclose(demos.episode_returns[1], buffers[1].rewards.sum())


# ---------------------------------------------------------------------- groups and demo_quality
def grouped_demos():
    """synthetic_demos with operators ["alice", "bob", "alice", "carol"] and demo scores."""
    demos, eps = synthetic_demos()
    return DemoSet.from_episodes(
        eps,
        demos.attrs,
        groups=["alice", "bob", "alice", "carol"],
        demo_quality=[0.9, 0.2, 0.75, 0.5],
    )


def test_groups_and_demo_quality_round_trip(tmp_path):
    demos = grouped_demos()
    assert demos.groups.tolist() == ["alice", "bob", "alice", "carol"]
    path = demos.save(tmp_path / "g.h5")
    # plain h5py: one attribute per demo
    with h5py.File(path) as f:
        assert f["data/demo_1"].attrs["group"] == "bob"
        assert f["data/demo_3"].attrs["demo_quality"] == 0.5
    loaded = DemoSet.load(path)
    assert loaded.equals(demos)
    assert loaded.groups.tolist() == ["alice", "bob", "alice", "carol"]
    np.testing.assert_array_equal(loaded.demo_quality, [0.9, 0.2, 0.75, 0.5])
    # integer operator ids stay integers
    _, eps = synthetic_demos()
    ints = DemoSet.from_episodes(eps, demos.attrs, groups=np.array([3, 1, 3, 2], np.int32))
    back = DemoSet.load(ints.save(tmp_path / "i.h5"))
    assert back.groups.dtype == np.int64 and back.groups.tolist() == [3, 1, 3, 2]
    # without groups nothing is written and None comes back; equals tells them apart
    plain, _ = synthetic_demos()
    with h5py.File(plain.save(tmp_path / "p.h5")) as f:
        assert "group" not in f["data/demo_0"].attrs
    assert DemoSet.load(tmp_path / "p.h5").groups is None
    assert not plain.equals(demos) and not demos.equals(plain)
    relabelled = grouped_demos()
    relabelled.groups[0] = "bob"
    assert not relabelled.equals(demos)


def test_groups_of_the_wrong_length_or_type_are_rejected(tmp_path):
    demos, eps = synthetic_demos()
    with pytest.raises(DemoFormatError, match=r"one operator id per episode: \(4,\), got \(3,\)"):
        DemoSet.from_episodes(eps, demos.attrs, groups=["a", "b", "c"])
    with pytest.raises(DemoFormatError, match="strings or integers"):
        DemoSet.from_episodes(eps, demos.attrs, groups=[0.5, 1.5, 2.5, 3.5])
    with pytest.raises(DemoFormatError, match=r"demo_quality must hold one score per episode"):
        DemoSet.from_episodes(eps, demos.attrs, demo_quality=[0.1, 0.2])
    with pytest.raises(DemoFormatError, match="NaN"):
        DemoSet.from_episodes(eps, demos.attrs, demo_quality=[0.1, np.nan, 0.2, 0.3])
    # a file where only some demos carry a group: a clear error, not a silent None
    path = grouped_demos().save(tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        del f["data/demo_2"].attrs["group"]
    with pytest.raises(DemoFileError, match="demo_2 has no 'group' attribute"):
        DemoSet.load(path)


def test_groups_and_demo_quality_follow_filter(tmp_path):
    demos = grouped_demos()
    kept = demos.filter_episodes(np.array([False, True, True, False]))
    assert kept.groups.tolist() == ["bob", "alice"]
    np.testing.assert_array_equal(kept.demo_quality, [0.2, 0.75])
    # a step filter that splits episode 0 into two runs: both keep episode 0's operator
    keep = np.zeros(len(demos), bool)
    keep[[0, 1, 3]] = True
    keep[demos.episode_starts[3]] = True
    runs = demos.filter(keep)
    assert runs.groups.tolist() == ["alice", "alice", "carol"]
    np.testing.assert_array_equal(runs.demo_quality, [0.9, 0.9, 0.5])
    assert DemoSet.load(kept.save(tmp_path / "k.h5")).equals(kept)


def test_minari_payload_carries_groups_and_demo_quality():
    payload = json.loads(json.dumps(grouped_demos()._minari_payload()))
    assert payload["groups"] == ["alice", "bob", "alice", "carol"]
    assert payload["demo_quality"] == [0.9, 0.2, 0.75, 0.5]
    assert "groups" not in synthetic_demos()[0]._minari_payload()


# ---------------------------------------------------------------------- masks (filter keys)
def test_mask_round_trip_in_robomimic_format(tmp_path):
    demos = grouped_demos()
    path = demos.save(tmp_path / "m.h5")
    demoset_module.write_mask(path, "clean", ["demo_0", "demo_2", "demo_3"])
    # exactly what robomimic's create_hdf5_filter_key writes and filter_by_key reads
    with h5py.File(path) as f:
        ds = f["mask/clean"]
        assert ds.dtype.kind == "S" and ds.shape == (3,)
        assert [e.decode("utf-8") for e in np.array(ds[:])] == ["demo_0", "demo_2", "demo_3"]
    assert demoset_module.read_masks(path) == {"clean": ["demo_0", "demo_2", "demo_3"]}
    subset = DemoSet.load(path, mask="clean")
    assert subset.equals(demos.filter_episodes(np.array([True, False, True, True])))
    assert subset.groups.tolist() == ["alice", "alice", "carol"]
    # the whole file still loads whole
    assert DemoSet.load(path).equals(demos)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


def test_mask_order_is_the_files_demo_order(tmp_path):
    demos, _ = synthetic_demos()
    path = demos.save(tmp_path / "m.h5")
    demoset_module.write_mask(path, "rev", ["demo_3", "demo_1"])
    subset = DemoSet.load(path, mask="rev")
    np.testing.assert_array_equal(subset.episode_lengths, demos.episode_lengths[[1, 3]])


def test_mask_errors_are_clear_and_leave_the_file_unchanged(tmp_path):
    demos, _ = synthetic_demos()
    path = demos.save(tmp_path / "m.h5")
    demoset_module.write_mask(path, "a", ["demo_1"])
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already has mask/a.*overwrite=True"):
        demoset_module.write_mask(path, "a", ["demo_2"])
    with pytest.raises(DemoFileError, match="has no demo_7"):
        demoset_module.write_mask(path, "b", ["demo_0", "demo_7"])
    with pytest.raises(ValueError, match="mask name 'x/y'"):
        demoset_module.write_mask(path, "x/y", ["demo_0"])
    with pytest.raises(ValueError, match="no demo"):
        demoset_module.write_mask(path, "empty", [])
    assert path.read_bytes() == before
    demoset_module.write_mask(path, "a", ["demo_2"], overwrite=True)
    assert demoset_module.read_masks(path) == {"a": ["demo_2"]}
    # unknown mask: the message lists the masks there are
    with pytest.raises(DemoFileError, match=r"no mask 'nope' \(its masks: a\)"):
        DemoSet.load(path, mask="nope")
    # a mask naming a demo the file does not hold (e.g. written by another tool)
    with h5py.File(path, "a") as f:
        f["mask/stale"] = np.array(["demo_0", "demo_9"], dtype="S")
    with pytest.raises(DemoFileError, match="mask/stale .* names demo_9, which data/ does not"):
        DemoSet.load(path, mask="stale")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


def test_failed_mask_write_leaves_the_file_unchanged(tmp_path, monkeypatch):
    demos, _ = synthetic_demos()
    path = demos.save(tmp_path / "m.h5")
    before = path.read_bytes()

    def broken(*args):
        raise KeyboardInterrupt  # killed half-way through adding the mask

    monkeypatch.setattr(demoset_module, "put_mask", broken)
    with pytest.raises(KeyboardInterrupt):
        demoset_module.write_mask(path, "a", ["demo_0"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


# ---------------------------------------------------------------------- stale temp files
def test_next_save_removes_only_stale_temp_files_of_its_target(tmp_path):
    demos, _ = synthetic_demos()
    dead = 4_194_305  # above Linux's largest pid_max: no process has this id
    stale = [
        tmp_path / f".demos.h5.{dead}.0123abcd.tmp",  # a save killed half-way
        tmp_path / f".demos.h5.{dead}.89abcdef.probe.tmp",  # killed during the folder probe
    ]
    kept = [
        tmp_path / f".demos.h5.{os.getppid()}.0123abcd.tmp",  # its writer is still running
        tmp_path / f".other.h5.{dead}.0123abcd.tmp",  # another target's
        tmp_path / f".demos.h5.{dead}.notes",  # not our name pattern
        tmp_path / "demos.h5.bak",
    ]
    for p in stale + kept:
        p.write_bytes(b"partial")
    demos.save(tmp_path / "demos.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["demos.h5", *(p.name for p in kept)]
    )
    assert all(p.read_bytes() == b"partial" for p in kept)
    assert DemoSet.load(tmp_path / "demos.h5").equals(demos)
