"""Bring your own demonstrations: robomimic datasets in, robomimic filter keys out."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from choicebc.cli import main
from choicebc.demoset import DemoFileError, DemoSet, read_masks, write_mask

# source demo name -> (length, done at the end); demo_10 sorts after demo_9 (robomimic's order)
DEMOS = {"demo_1": (5, True), "demo_2": (3, False), "demo_9": (6, True), "demo_10": (4, True)}
ORDER = ["demo_1", "demo_2", "demo_9", "demo_10"]
OPERATORS = {"worse": ["demo_1", "demo_10"], "better": ["demo_2", "demo_9"]}


def obs_arrays(index: int, t: int) -> dict[str, np.ndarray]:
    """Observation keys of different shapes whose values encode (demo, step, key, entry)."""
    steps = np.arange(t + 1, dtype=np.float64)[:, None]  # t + 1: obs plus the final next_obs
    return {
        "object": 1000 * index + 10 * steps + np.arange(10) / 100,  # (T+1, 10)
        "robot0_eef_pos": -(1000 * index + 10 * steps + np.arange(3) / 100),  # (T+1, 3)
        "grid": (1000 * index + 10 * steps + np.arange(6) / 100).reshape(t + 1, 2, 3),
    }


def write_robomimic_file(path, next_obs: bool = True, env_args: bool = True, masks=None):
    """A small dataset in robomimic's layout (docs/datasets/overview.md), plain h5py only."""
    masks = {**OPERATORS, "20_percent": ["demo_9"]} if masks is None else masks
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for name, (t, done) in DEMOS.items():
            index = int(name[5:])
            g = data.create_group(name)
            g.attrs["num_samples"] = t
            g.attrs["model_file"] = "<mujoco model='lift'/>"
            values = obs_arrays(index, t)
            for key, array in values.items():
                g.create_dataset(f"obs/{key}", data=array[:t])
                if next_obs:
                    g.create_dataset(f"next_obs/{key}", data=array[1:])
            g.create_dataset("actions", data=np.full((t, 7), index, np.float64) + np.arange(7))
            g.create_dataset("rewards", data=np.arange(t, dtype=np.float64) * index)
            g.create_dataset("dones", data=(np.arange(t) == t - 1) & done, dtype=np.int64)
            g.create_dataset("states", data=np.zeros((t, 32)))
            total += t
        data.attrs["total"] = total
        if env_args:
            data.attrs["env_args"] = json.dumps(
                {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20}}
            )
        for name, members in masks.items():
            f[f"mask/{name}"] = np.array(members, dtype="S")  # create_hdf5_filter_key's way
    return path


def robomimic_filter_key(path, name) -> list[str]:
    """How robomimic's SequenceDataset reads a filter key (load_demo_info)."""
    with h5py.File(path, "r") as f:
        return [elem.decode("utf-8") for elem in np.array(f[f"mask/{name}"][:])]


KEYS = ["object", "robot0_eef_pos", "grid"]


def test_import_flattens_keys_in_order_and_keeps_robomimics_demo_order(tmp_path):
    path = write_robomimic_file(tmp_path / "lift_mh.hdf5")
    demos = DemoSet.from_robomimic(path, obs_keys=KEYS)
    assert demos.env_id == "Lift" and not demos.has_labels and not demos.is_corrupt.any()
    assert demos.episode_lengths.tolist() == [DEMOS[n][0] for n in ORDER]
    assert demos.obs_dim == 10 + 3 + 6 and demos.act_dim == 7
    assert demos.observations.dtype == np.float32
    for i, name in enumerate(ORDER):
        t = DEMOS[name][0]
        ep = demos.episode(i)
        values = obs_arrays(int(name[5:]), t)
        # obs = object | robot0_eef_pos | grid flattened row-major, in the order of obs_keys
        want = np.concatenate(
            [values["object"], values["robot0_eef_pos"], values["grid"].reshape(t + 1, 6)], 1
        ).astype(np.float32)
        np.testing.assert_array_equal(ep["obs"], want[:t])
        np.testing.assert_array_equal(ep["final_obs"], want[t])  # from next_obs
        np.testing.assert_array_equal(ep["actions"][:, 0], np.full(t, int(name[5:])))
        np.testing.assert_array_equal(ep["rewards"], np.arange(t) * int(name[5:]))
        done = DEMOS[name][1]
        assert ep["terminated"].tolist() == [False] * (t - 1) + [done]
        assert ep["truncated"].tolist() == [False] * (t - 1) + [not done]
        assert ep["seed"] == -1
    # operators from robomimic's worse/okay/better masks
    assert demos.groups.tolist() == ["worse", "better", "better", "worse"]
    assert json.loads(demos.attrs["obs_keys"]) == KEYS
    assert json.loads(demos.attrs["robomimic_env_args"])["env_name"] == "Lift"
    # another key order is another observation layout
    swapped = DemoSet.from_robomimic(path, obs_keys=["robot0_eef_pos", "object"])
    np.testing.assert_array_equal(swapped.observations[:, :3], demos.observations[:, 10:13])


def test_import_without_next_obs_ends_on_the_last_observation(tmp_path):
    path = write_robomimic_file(tmp_path / "r.hdf5", next_obs=False)
    demos = DemoSet.from_robomimic(path, obs_keys=["robot0_eef_pos"])
    ends = np.cumsum(demos.episode_lengths) - 1
    np.testing.assert_array_equal(demos.final_observations, demos.observations[ends])


def test_import_groups_from_chosen_masks(tmp_path):
    masks = {
        **OPERATORS,
        "okay": ["demo_1"],  # overlaps "worse": robomimic's tiers are then not usable
        "op_a": ["demo_1", "demo_2"],
        "op_b": ["demo_9", "demo_10"],
    }
    path = write_robomimic_file(tmp_path / "r.hdf5", masks=masks)
    with pytest.warns(UserWarning, match="demo_1 is in both mask/worse and mask/okay"):
        assert DemoSet.from_robomimic(path, obs_keys=["object"]).groups is None
    chosen = DemoSet.from_robomimic(path, obs_keys=["object"], group_masks=["op_a", "op_b"])
    assert chosen.groups.tolist() == ["op_a", "op_a", "op_b", "op_b"]
    with pytest.raises(DemoFileError, match="demo_1 is in both mask/op_a and mask/worse"):
        DemoSet.from_robomimic(path, obs_keys=["object"], group_masks=["op_a", "worse"])
    with pytest.raises(DemoFileError, match="demo_9, demo_10 not in any of the masks"):
        DemoSet.from_robomimic(path, obs_keys=["object"], group_masks=["op_a"])
    with pytest.raises(DemoFileError, match=r"no mask \['op_c'\] \(its masks: .*op_a"):
        DemoSet.from_robomimic(path, obs_keys=["object"], group_masks=["op_c"])
    # no operator masks at all: no groups, no warning
    plain = write_robomimic_file(tmp_path / "plain.hdf5", masks={})
    assert DemoSet.from_robomimic(plain, obs_keys=["object"]).groups is None


def test_import_errors_say_what_to_do(tmp_path):
    path = write_robomimic_file(tmp_path / "r.hdf5")
    with pytest.raises(DemoFileError, match=r"obs has no \['eef'\]: its observation keys are "):
        DemoSet.from_robomimic(path, obs_keys=["object", "eef"])
    no_env = write_robomimic_file(tmp_path / "no_env.hdf5", env_args=False)
    with pytest.raises(DemoFileError, match="env_id='...'"):
        DemoSet.from_robomimic(no_env, obs_keys=["object"])
    assert DemoSet.from_robomimic(no_env, ["object"], env_id="Lift-v0").env_id == "Lift-v0"
    with pytest.raises(FileNotFoundError, match="no robomimic dataset file"):
        DemoSet.from_robomimic(tmp_path / "missing.hdf5", obs_keys=["object"])
    with h5py.File(path, "a") as f:
        del f["data/demo_9/dones"]
    with pytest.raises(DemoFileError, match="demo_9 has no 'dones'"):
        DemoSet.from_robomimic(path, obs_keys=["object"])


def test_masks_are_written_exactly_as_robomimic_writes_them(tmp_path):
    """Our write_mask and robomimic's create_hdf5_filter_key give the same dataset."""
    source = write_robomimic_file(tmp_path / "r.hdf5")
    ours, theirs = tmp_path / "ours.hdf5", tmp_path / "theirs.hdf5"
    shutil.copyfile(source, ours)
    shutil.copyfile(source, theirs)
    write_mask(ours, "picked", ["demo_2", "demo_10"])
    with h5py.File(theirs, "a") as f:
        f["mask/picked"] = np.array(["demo_2", "demo_10"], dtype="S")
    with h5py.File(ours) as a, h5py.File(theirs) as b:
        assert a["mask/picked"].dtype == b["mask/picked"].dtype
        assert a["mask/picked"].shape == b["mask/picked"].shape
        assert a["mask/picked"][()].tolist() == b["mask/picked"][()].tolist()
    assert robomimic_filter_key(ours, "picked") == ["demo_2", "demo_10"]
    # and the robomimic file's other filter keys are untouched
    assert read_masks(ours) == {**read_masks(source), "picked": ["demo_2", "demo_10"]}


def test_demos_import_end_to_end(tmp_path, capsys):
    source = write_robomimic_file(tmp_path / "lift_mh.hdf5")
    out = tmp_path / "lift.h5"
    args = ["demos", "import", "--robomimic", str(source), "--out", str(out)]
    assert main([*args, "--obs-keys", *KEYS]) == 0
    printed = capsys.readouterr().out
    assert "observation = object + robot0_eef_pos + grid (flattened, in this order): 19" in printed
    assert "groups: better (2), worse (2)" in printed
    demos = DemoSet.load(out)
    direct = DemoSet.from_robomimic(source, obs_keys=KEYS)
    assert json.loads(demos.attrs.pop("source_demos")) == ORDER
    assert demos.equals(direct)
    # the source's filter keys come along, renamed to the DemoSet's demo_0.. numbering
    assert robomimic_filter_key(out, "worse") == ["demo_0", "demo_3"]
    assert robomimic_filter_key(out, "20_percent") == ["demo_2"]
    assert DemoSet.load(out, mask="better").episode_lengths.tolist() == [3, 6]
    # a mask written back into a copy reads with plain h5py the way robomimic reads it
    copy = tmp_path / "copy.h5"
    shutil.copyfile(out, copy)
    write_mask(copy, "long", ["demo_2", "demo_0"])
    assert robomimic_filter_key(copy, "long") == ["demo_2", "demo_0"]
    with h5py.File(copy) as f:
        assert f["mask/long"].dtype.kind == "S"
        assert f["data/demo_2"].attrs["num_samples"] == 6
    assert DemoSet.load(copy, mask="long").episode_lengths.tolist() == [5, 6]


def test_demos_import_errors_exit_2_with_one_line(tmp_path, capsys):
    source = write_robomimic_file(tmp_path / "r.hdf5")
    out = tmp_path / "o.h5"
    base = ["demos", "import", "--robomimic", str(source), "--out", str(out)]

    def error() -> str:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        return err

    assert main([*base, "--obs-keys", "object", "nope"]) == 2
    assert "obs has no ['nope']: its observation keys are ['grid', 'object'" in error()
    assert main([*base, "--obs-keys", "object", "--group-masks", "better"]) == 2
    assert "not in any of the masks ['better']" in error()
    missing = ["demos", "import", "--robomimic", str(tmp_path / "x.hdf5"), "--out", str(out)]
    assert main([*missing, "--obs-keys", "object"]) == 2
    assert "no robomimic dataset file" in error()
    assert not out.exists()
    assert main([*base, "--obs-keys", "object"]) == 0
    capsys.readouterr()
    assert main([*base, "--obs-keys", "object"]) == 2
    assert "exists" in error()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5", "r.hdf5"]
