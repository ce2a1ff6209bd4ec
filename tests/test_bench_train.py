"""``choicebc bench train``: bare head steps and ``train_bc`` end to end, on a tiny budget."""

from __future__ import annotations

import argparse
import json

import numpy as np

from choicebc.bench import train as bench_train


def test_synthetic_demos_have_the_demoset_fields_train_bc_reads():
    demos = bench_train.synthetic_demos(5000, obs_dim=17, act_dim=6, seed=0, episode_len=1000)
    assert demos.observations.shape == (5000, 17) and demos.observations.dtype == np.float32
    assert demos.actions.shape == (5000, 6) and np.abs(demos.actions).max() <= 1
    assert demos.is_corrupt.dtype == bool and 0.2 < demos.is_corrupt.mean() < 0.4
    assert np.array_equal(np.unique(demos.episode_ids), np.arange(5))


def run_bench(tmp_path, flags: str) -> dict:
    """``choicebc bench train FLAGS --rounds 1 --train-rounds 1``; its JSON result."""
    parser = argparse.ArgumentParser()
    bench_train.add_arguments(parser)
    out = tmp_path / "bench_train.json"
    once = ["--rounds", "1", "--train-rounds", "1"]
    args = parser.parse_args([*flags.split(), *once, "--out", str(out)])
    assert bench_train.run(args) == 0
    return json.loads(out.read_text())


def test_run_reports_ratios_and_checks(tmp_path, capsys):
    flags = "--heads mse choicenet --hidden 32 --steps 3 --transitions 4000 --train-steps 2 4"
    result = run_bench(tmp_path, flags)
    assert result["cost_ratio_vs_mse_cpu"]["mse"] == 1.0
    assert set(result["train_bc_share_of_bare_wall"]) == {"mse", "choicenet"}
    assert all(v > 0 for v in result["bare_steps_per_second_wall"].values())
    checks = "\n".join(result["checks"])
    assert "choicenet/mse step cost" in checks and "train_bc choicenet" in checks
    assert all(line.startswith(("PASS: ", "FAIL: ")) for line in result["checks"])
    assert result["table"] in capsys.readouterr().out


def test_episode_choice_is_timed_against_the_step_choice(tmp_path):
    flags = "--heads mse --hidden 16 --steps 2 --no-train-bc --episode-choice"
    result = run_bench(tmp_path, flags + " --transitions 3000 --choice-steps 4 8")
    assert set(result["choice_seconds_per_step"]) == {"step", "episode"}
    assert any("episode / step choice" in line for line in result["checks"])
    assert "| episode |" in result["table"]
