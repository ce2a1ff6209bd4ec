"""``choicebc bench sim``: every rate of a row measured, the table and the target verdicts."""

from __future__ import annotations

import argparse
import json

from choicebc.bench import sim as bench_sim


def test_run_measures_every_rate_on_a_tiny_budget(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_sim.add_arguments(parser)
    out = tmp_path / "bench_sim.json"
    args = parser.parse_args(
        [
            "--env-ids", "choicebc/PointReach-v0",
            "--num-envs", "4",
            "--episodes", "4",
            "--min-steps", "1",
            "--limit-steps", "20",
            "--sync-env-steps", "32",
            "--repeats", "2",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert bench_sim.run(args) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["env_id"] == "choicebc/PointReach-v0"
    rates = [row["evaluate"]["rate"], row["physics_limit"], row["sync_default_threads"]["rate"]]
    rates += list(row["sync_vector_env"].values())
    assert all(r > 0 for r in rates)
    assert set(row["sync_vector_env"]) == {"8", "4"}  # JSON keys: x8 and x N
    assert row["ratio_sync_default_threads"] == row["evaluate"]["rate"] / rates[2]
    assert len(row["repeats"]) == 2 and len(row["sync_default_threads"]["runs"]) == 2
    ratios = sorted(run["ratio_limit"] for run in row["repeats"])
    assert row["ratio_limit_range"] == ratios
    assert row["ratio_limit"] == sum(ratios) / 2  # the median of two
    printed = capsys.readouterr().out
    assert "Sync x8, torch default threads" in printed
    assert "PASS" not in printed and "FAIL" not in printed  # targets are HalfCheetah's only


def _row(ratio_limit: float, sync8: float, sync_default: float) -> dict:
    return {
        "env_id": "HalfCheetah-v5",
        "ratio_limit": ratio_limit,
        "ratio_sync": {8: sync8, 256: 1.0},
        "ratio_sync_default_threads": sync_default,
    }


def test_verdicts_check_the_halfcheetah_targets():
    lines = bench_sim.verdicts([_row(0.86, 1.9, 14.6), {**_row(0.1, 0.1, 0.1), "env_id": "Ant-v5"}])
    assert len(lines) == 3
    assert lines[0].startswith("PASS") and "physics limit 0.86" in lines[0]
    assert lines[1].startswith("FAIL") and "1 thread" in lines[1]
    assert lines[2].startswith("PASS") and "default threads) 14.60" in lines[2]
    assert all(line.startswith("FAIL") for line in bench_sim.verdicts([_row(0.84, 3.9, 3.9)]))


def test_profile_evaluate_script_splits_each_threads_time():
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "profile_evaluate.py"
    args = ["--env-id", "choicebc/PointReach-v0", "--num-envs", "64", "--episodes", "64"]
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True
    )
    threads = [line for line in done.stdout.splitlines() if line.startswith("choicebc-eval")]
    assert len(threads) == 2  # one line per half-batch thread
    for line in threads:
        shares = {k: float(v) for k, v in re.findall(r"([a-z/ ]+) (-?[0-9.]+)", line)}
        shares = {k.strip(): v for k, v in shares.items()}
        assert set(shares) >= {"policy", "physics", "observation/reward", "rest"}
        assert all(0.0 < shares[k] < 1.0 for k in ("policy", "physics", "observation/reward"))
