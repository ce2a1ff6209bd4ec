"""The main job end to end on a tiny budget: every stage runs and the report is written."""

from __future__ import annotations

import json

import pytest

from choicebc.cli import main
from choicebc.experts import shipped_experts
from choicebc.quickstart import LABELS, QuickstartConfig, run_quickstart


@pytest.mark.skipif(
    "HalfCheetah-v5" not in shipped_experts(), reason="no shipped HalfCheetah-v5 expert"
)
def test_quickstart_tiny_run_writes_report_and_figures(tmp_path, capsys):
    cfg = QuickstartConfig(
        episodes=2, steps=30, eval_episodes=2, num_envs=2, out=str(tmp_path), workers=1
    )
    report = run_quickstart(cfg)
    out, err = capsys.readouterr()
    # progress for every stage, each bar ending full: 3 policies x 30 steps, 2 x 1000 env-steps
    assert "train 3 policies: 100%" in err and "90/90" in err
    for label in [*LABELS, "the expert"]:
        assert f"evaluate {label}: 100%" in err
    assert err.count("2000/2000") >= 4
    assert "ChoiceNet data-quality ROC AUC at finding the corrupt steps: " in out
    text = report.read_text()
    for label in LABELS:
        assert f"| {label} |" in text
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
    assert (tmp_path / "correlations.svg").stat().st_size > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    expert = summary["results"]["expert"]
    # the shipped expert itself scores about 100 on the card's normalized scale
    assert expert["normalized_score"] is not None and 80 < expert["normalized_score"] < 120
    assert 0.0 <= summary["roc_auc"] <= 1.0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),
        (["--eval-episodes", "-3"], "--eval-episodes must be an integer >= 1, got -3"),
        (["--num-envs", "0"], "--num-envs must be an integer >= 1, got 0"),
        (["--env-id", "HalfCheetah-v9"], "unknown env id 'HalfCheetah-v9'"),
    ],
)
def test_cli_refuses_bad_settings_before_any_work(tmp_path, capsys, flags, message):
    assert main(["quickstart", "--out", str(tmp_path / "qs"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "qs").exists()


def test_cli_checks_the_out_folder_before_any_work(read_only_folder, capsys):
    assert main(["quickstart", "--out", str(read_only_folder / "qs")]) == 2
    assert f"cannot write {read_only_folder / 'qs' / 'report.md'}" in capsys.readouterr().err
