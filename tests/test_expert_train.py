"""`choicebc expert train`: resume from a pickle-free checkpoint; planted pickles never run."""

from __future__ import annotations

import base64
import csv
import io
import json
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch

from choicebc.checkpoint_folder import MARKER, checkpoint_step
from choicebc.cli import main
from choicebc.experts import train as expert_train
from choicebc.experts.resume import (
    BUFFER_FILE,
    ExpertResumeError,
    load_training_state,
    save_training_state,
)
from choicebc.experts.train import CHECKPOINT_DIR, ExpertTrainConfig, train_expert

ENV = "Pendulum-v1"  # cheap: a 3-d obs, 1-d action, 200-step episodes


def tiny_config(out_dir, **kw) -> ExpertTrainConfig:
    kw = {"total_steps": 400, "checkpoint_every": 100, "eval_every": 150, "eval_episodes": 1, **kw}
    return ExpertTrainConfig(ENV, out_dir=str(out_dir), hidden=(16, 16), **kw)


def progress_steps(run) -> list[int]:
    with (run / "progress.csv").open() as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


class Payload:
    """Unpickling this creates ``path``: proof that a file was (or was not) unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def plant_pickles(run, marker) -> None:
    """An SB3-style checkpoint.zip whose ``data`` names a pickled object, and a pickled buffer."""
    payload = pickle.dumps(Payload(marker))
    data = {"policy_class": {":type:": "<class 'type'>", ":serialized:": base64.b64encode(payload)}}
    data["policy_class"][":serialized:"] = data["policy_class"][":serialized:"].decode()
    with zipfile.ZipFile(run / "checkpoint.zip", "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("_stable_baselines3_version", "2.9.2")
    (run / "replay_buffer.pkl").write_bytes(payload)


def test_the_planted_payload_is_live(tmp_path):
    """The payload used below does create its file when unpickled (so its absence means
    nothing unpickled it)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


def test_resume_after_an_interruption_continues_from_the_checkpoint(tmp_path, monkeypatch, capsys):
    real_evaluate, calls = expert_train.evaluate_gym, []

    def killed_at_second_evaluation(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # step 300: after the checkpoints of 100 and 200
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(expert_train, "evaluate_gym", killed_at_second_evaluation)
    cfg = tiny_config(tmp_path, snapshots=True)
    with pytest.raises(KeyboardInterrupt):
        train_expert(cfg, progress=False)
    run = tmp_path / ENV
    ckpt = run / CHECKPOINT_DIR
    assert checkpoint_step(ckpt) == 200
    saved = json.loads((ckpt / "state.json").read_text())["counters"]
    assert saved["num_timesteps"] == 200
    assert progress_steps(run) == [150]
    assert (run / "snapshots" / "step_150" / "card.json").is_file()

    monkeypatch.setattr(expert_train, "evaluate_gym", real_evaluate)
    capsys.readouterr()
    policy = train_expert(cfg, progress=False)
    assert f"resuming {ENV} from step 200" in capsys.readouterr().out
    assert checkpoint_step(ckpt) == 400
    final = json.loads((ckpt / "state.json").read_text())["counters"]
    assert final["num_timesteps"] == 400
    # one gradient step per env step after the checkpoint, none repeated from the start
    assert saved["_n_updates"] + 190 <= final["_n_updates"] <= saved["_n_updates"] + 200
    assert progress_steps(run) == [150, 300]
    assert (run / "snapshots" / "step_300" / "card.json").is_file()
    assert policy.card["total_steps"] in (150, 300)
    assert sorted(p.name for p in run.iterdir()) == [
        "best",
        "checkpoint",
        "config.json",
        "last",
        "progress.csv",
        "snapshots",
    ]


def test_training_state_round_trips_exactly(tmp_path):
    import gymnasium as gym
    from stable_baselines3 import SAC

    def fresh():
        kw = {"seed": 1, "device": "cpu", "policy_kwargs": {"net_arch": [16, 16]}}
        return SAC("MlpPolicy", gym.make(ENV), **kw)

    model = fresh()
    model.learn(150)
    save_training_state(model, tmp_path, {"env_id": ENV})
    draws = (random.random(), np.random.random(), torch.rand(3), model.action_space.sample())
    other = fresh()
    load_training_state(other, tmp_path)
    again = (random.random(), np.random.random(), torch.rand(3), other.action_space.sample())
    assert draws[0] == again[0] and draws[1] == again[1]
    assert torch.equal(draws[2], again[2]) and np.array_equal(draws[3], again[3])
    for (k, a), (_, b) in zip(
        model.policy.state_dict().items(), other.policy.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert torch.equal(model.log_ent_coef, other.log_ent_coef)
    for opt_a, opt_b in [
        (model.actor.optimizer, other.actor.optimizer),
        (model.critic.optimizer, other.critic.optimizer),
        (model.ent_coef_optimizer, other.ent_coef_optimizer),
    ]:
        a, b = opt_a.state_dict(), opt_b.state_dict()
        assert a["param_groups"] == b["param_groups"]
        for idx, state in a["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["state"][idx][key]), (idx, key)
    # the restored ent-coef optimizer still steps the restored tensor (same object)
    assert other.ent_coef_optimizer.param_groups[0]["params"][0] is other.log_ent_coef
    rb_a, rb_b = model.replay_buffer, other.replay_buffer
    assert (rb_b.pos, rb_b.full) == (rb_a.pos, rb_a.full) == (150, False)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(getattr(rb_a, name)[:150], getattr(rb_b, name)[:150]), name
    assert (other.num_timesteps, other._n_updates) == (model.num_timesteps, model._n_updates)


def test_a_pickled_checkpoint_is_refused_and_never_loaded(tmp_path, capsys):
    run = tmp_path / ENV
    run.mkdir()
    marker = tmp_path / "payload-ran"
    plant_pickles(run, marker)
    code = main(["expert", "train", ENV, "--out-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "pickle" in err and "checkpoint.zip, replay_buffer.pkl" in err and "--out-dir" in err
    assert not (run / CHECKPOINT_DIR).exists()  # nothing trained over the old run


def test_planted_pickles_beside_a_checkpoint_are_ignored(tmp_path, capsys):
    cfg = tiny_config(tmp_path, total_steps=200, eval_every=100)
    train_expert(cfg, progress=False)
    run = tmp_path / ENV
    marker = tmp_path / "payload-ran"
    plant_pickles(run, marker)
    cfg.total_steps = 300
    train_expert(cfg, progress=False)
    assert not marker.exists()
    assert checkpoint_step(run / CHECKPOINT_DIR) == 300
    assert "ignoring checkpoint.zip, replay_buffer.pkl" in capsys.readouterr().out


def test_object_arrays_in_the_replay_buffer_file_are_refused(tmp_path):
    """An npz can hold a pickled object array: it is read with allow_pickle=False."""
    cfg = tiny_config(tmp_path, total_steps=200, eval_every=100)
    train_expert(cfg, progress=False)
    ckpt = tmp_path / ENV / CHECKPOINT_DIR
    marker = tmp_path / "payload-ran"
    buf = io.BytesIO()
    arrays = dict(np.load(ckpt / BUFFER_FILE))
    arrays["observations"] = np.array([Payload(marker)], dtype=object)
    np.savez(buf, **arrays)
    (ckpt / BUFFER_FILE).write_bytes(buf.getvalue())
    complete = json.loads((ckpt / MARKER).read_text())  # keep the copy "complete"
    complete["files"][BUFFER_FILE] = len(buf.getvalue())
    (ckpt / MARKER).write_text(json.dumps(complete))
    cfg.total_steps = 300
    with pytest.raises(ExpertResumeError, match="replay_buffer.npz"):
        train_expert(cfg, progress=False)
    assert not marker.exists()


def test_a_checkpoint_of_other_settings_is_refused(tmp_path, capsys):
    train_expert(tiny_config(tmp_path, total_steps=100, eval_every=100), progress=False)
    args = ["expert", "train", ENV, "--out-dir", str(tmp_path), "--hidden", "32", "32"]
    assert main([*args, "--total-steps", "200", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hidden=[16, 16]" in err and "--out-dir" in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
        (["--algo", "td3"], "unknown algo 'td3'"),
        (["--total-steps", "-5"], "--total-steps must be >= 0"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["expert", "train", ENV, "--out-dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
