"""The robustness report harness: resume, parallel = serial, Ray, rendering, missing cells.

Runs use tiny budgets on the cheapest task with a shipped expert (the 2-D PointReach, else
HalfCheetah): the numbers are not meaningful, only that the harness moves them correctly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from choicebc import report
from choicebc.atomic import write_json_atomic
from choicebc.cli import main as cli_main
from choicebc.experts import shipped_experts
from choicebc.report import (
    QUICK,
    Budget,
    RayUnavailableError,
    ReportConfig,
    ReportError,
    make_cell,
    render_report,
    run_report,
)

ENV = next(
    (e for e in ("choicebc/PointReach-v0", "HalfCheetah-v5") if e in shipped_experts()), None
)
needs_expert = pytest.mark.skipif(ENV is None, reason="no shipped expert to collect demos with")


def tiny(tmp_path: Path, **changes) -> ReportConfig:
    """Two cells (MSE-BC and the oracle at 30 % flipped step-mixing), seconds each."""
    values = dict(
        envs=(ENV,),
        adversaries=("flipped",),
        mixes=("step",),
        ratios=(0.3,),
        seeds=(0,),
        methods=("mse",),
        episodes=4,
        steps=20,
        eval_episodes=3,
        num_envs=3,
        out=str(tmp_path / "run"),
        results=str(tmp_path / "report.md"),
        workers=1,
        progress=False,
    )
    values.update(changes)
    return ReportConfig(**values)


def cell_files(out: str | Path) -> dict[str, dict]:
    """relative path -> cell JSON without its timing fields (which differ run to run)."""
    files = {}
    for path in sorted(Path(out, "cells").rglob("*.json")):
        data = json.loads(path.read_text())
        data.pop("timings")
        data.pop("finished")
        files[str(path.relative_to(out))] = data
    return files


@pytest.fixture(scope="module")
def serial_cells(tmp_path_factory) -> dict[str, dict]:
    """The two tiny cells computed serially in this process: the reference for other pools."""
    cfg = tiny(tmp_path_factory.mktemp("serial"))
    run_report(cfg)
    return cell_files(cfg.out)


@pytest.fixture
def counted(monkeypatch):
    """Count the cells the harness computes (serial runs happen in this process)."""
    calls = []
    real = report.runner.run_cell

    def run_cell(cell, root, budget):
        calls.append(str(cell))
        return real(cell, root, budget)

    monkeypatch.setattr(report.runner, "run_cell", run_cell)
    return calls


@needs_expert
def test_finished_cells_are_never_recomputed(tmp_path, counted):
    cfg = tiny(tmp_path)
    run_report(cfg)
    assert sorted(counted) == sorted(f"{ENV}/flipped-step-r30-s0/{m}" for m in ("mse", "oracle"))
    before = {p: p.read_bytes() for p in Path(cfg.out, "cells").rglob("*.json")}
    assert len(before) == 2

    counted.clear()
    run_report(cfg)
    assert counted == []  # the second run computes nothing
    assert {p: p.read_bytes() for p in Path(cfg.out, "cells").rglob("*.json")} == before

    # a bigger grid only computes the new cells
    run_report(tiny(tmp_path, ratios=(0.0, 0.3)))
    assert sorted(counted) == sorted(f"{ENV}/clean-s0/{m}" for m in ("mse", "oracle"))

    counted.clear()
    run_report(tiny(tmp_path, force=True))
    assert len(counted) == 2

    # a run folder made with another budget is refused instead of silently mixed
    with pytest.raises(ReportError, match="another --out"):
        run_report(tiny(tmp_path, steps=21))


@needs_expert
def test_cells_from_other_code_are_kept_listed_and_rerun_on_request(tmp_path, counted, capsys):
    cfg = tiny(tmp_path)
    run_report(cfg)
    mse = next(Path(cfg.out, "cells").rglob("mse.json"))
    record = json.loads(mse.read_text())
    assert record["code_version"] == report.code_version()
    record["code_version"] = "0.0.0+000000000000"  # as if made by older code
    mse.write_text(json.dumps(record))

    counted.clear()
    capsys.readouterr()
    run_report(cfg)  # default: finished cells are kept, whatever code made them
    assert counted == []
    assert "1 finished cells came from other code" in capsys.readouterr().err
    text = Path(cfg.results).read_text()
    # the report lists the versions the cells came from, never the running code's
    assert "- `0.0.0+000000000000`: 1 cells" in text
    assert f"- `{report.code_version()}`: 1 cells" in text and "this code" not in text

    run_report(tiny(tmp_path, rerun_stale=True))
    assert counted == [f"{ENV}/flipped-step-r30-s0/mse"]  # only the stale one
    assert json.loads(mse.read_text())["code_version"] == report.code_version()
    assert f"- `{report.code_version()}`: 2 cells" in Path(cfg.results).read_text()


def _layout(root: Path, envs_inside: bool) -> tuple[Path, Path]:
    """A small choicebc source tree: (package folder, task folder). ``envs_inside``: the task
    code in ``choicebc/envs`` (a wheel); else in a top-level ``envs/`` (the editable install)."""
    pkg = root / "choicebc"
    envs = pkg / "envs" if envs_inside else root / "envs"
    files = {
        pkg / "__init__.py": "",
        pkg / "heads" / "mse.py": "A = 1\n",
        pkg / "plots.py": "B = 1\n",
        pkg / "report" / "render.py": "C = 1\n",
        pkg / "report" / "grid.py": "D = 1\n",
        pkg / "bench" / "sim.py": "E = 1\n",
        envs / "__init__.py": "",
        envs / "locomotion.py": "F = 1\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not envs_inside:  # the repository's link choicebc/envs -> ../envs: read once
        (pkg / "envs").symlink_to(Path("..") / "envs")
    return pkg, envs


def test_code_version_is_cached_and_names_the_release():
    import choicebc

    version = report.code_version()
    assert version.startswith(choicebc.__version__ + "+") and len(version.split("+")[1]) == 12
    assert report.code_version() == version  # cached, stable within a process


def test_code_version_hashes_result_code_and_tasks_not_figures(tmp_path):
    pkg, envs = _layout(tmp_path / "editable", envs_inside=False)
    files = report.grid.source_files(pkg, envs)
    assert sorted(files) == [
        "__init__.py", "envs/__init__.py", "envs/locomotion.py", "heads/mse.py", "report/grid.py",
    ]  # fmt: skip
    base = report.grid.hash_sources(files)
    # the same sources in a wheel's layout (tasks inside the package) give the same version
    wheel = report.grid.source_files(*_layout(tmp_path / "wheel", envs_inside=True))
    assert report.grid.hash_sources(wheel) == base

    def version_after(path: Path, text: str) -> str:
        path.write_text(text)
        return report.grid.hash_sources(report.grid.source_files(pkg, envs))

    assert version_after(pkg / "plots.py", "B = 2\n") == base  # figures only
    assert version_after(pkg / "report" / "render.py", "C = 2\n") == base  # tables only
    assert version_after(pkg / "bench" / "sim.py", "E = 2\n") == base  # benchmarks only
    assert version_after(envs / "locomotion.py", "F = 2\n") != base  # a task
    before = report.grid.hash_sources(files)
    assert version_after(pkg / "heads" / "mse.py", "A = 2\n") != before  # a head


def test_code_version_reads_the_installed_task_code(monkeypatch):
    import choicebc.envs.locomotion

    files = report.grid.result_affecting_files()
    task = Path(choicebc.envs.locomotion.__file__).resolve()
    assert files["envs/locomotion.py"].resolve() == task
    assert "report/render.py" not in files and "report/runner.py" in files
    resolved = [p.resolve() for p in files.values()]
    assert len(resolved) == len(set(resolved))  # no file hashed twice
    # a change to the task file's bytes changes the version
    base = report.grid.code_version.__wrapped__()
    real = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        data = real(path)
        return data + b"# changed\n" if path.resolve() == task else data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert report.grid.code_version.__wrapped__() != base


@needs_expert
def test_parallel_workers_write_the_same_cells_as_serial(tmp_path, serial_cells):
    parallel = tiny(tmp_path, workers=2)
    run_report(parallel)
    assert len(serial_cells) == 2 and cell_files(parallel.out) == serial_cells
    record = next(iter(serial_cells.values()))
    assert record["eval_episodes"] == 3 and record["corrupt_share"] > 0


@needs_expert
def test_two_cells_on_a_local_ray_instance(tmp_path, serial_cells):
    ray = pytest.importorskip("ray", reason="ray not installed: pip install -e '.[cluster]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = tiny(tmp_path, ray_address="local")
        run_report(cfg)
    finally:
        ray.shutdown()
    assert cell_files(cfg.out) == serial_cells
    runs = [json.loads(line) for line in Path(cfg.out, "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["ray_address"] == "local" and runs[-1]["cells_run"] == 2


@needs_expert
def test_a_failing_cell_is_reported_and_the_rest_finish(tmp_path, monkeypatch, capsys):
    real = report.runner.train_method

    def train_method(method, *args, **kwargs):
        if method == "oracle":
            raise RuntimeError("injected failure")
        return real(method, *args, **kwargs)

    monkeypatch.setattr(report.runner, "train_method", train_method)
    cfg = tiny(tmp_path)
    run_report(cfg)
    assert list(cell_files(cfg.out)) == [
        f"cells/{ENV.replace('/', '__')}/flipped-step-r30-s0/mse.json"
    ]
    assert "injected failure" in capsys.readouterr().err
    text = Path(cfg.results).read_text()
    assert "1 cells of the grid have no result yet" in text and "oracle" in text


def test_env_without_expert_is_skipped_and_listed_missing(tmp_path, capsys):
    env = "Swimmer-v5"  # a task of ours with no shipped expert
    assert env not in shipped_experts()
    cfg = tiny(tmp_path, envs=(env,), methods=("mse",), ratios=(0.0, 0.5))
    run_report(cfg)
    err = capsys.readouterr().err
    assert f"skipping {env}" in err and f"choicebc expert train {env}" in err
    text = Path(cfg.results).read_text()
    # 2 ratios x 1 seed x (mse + oracle)
    assert f"- **{env}**: all 4 cells — no shipped expert" in text
    assert f"choicebc expert train {env}" in text


def _record(env, adv, mix, ratio, seed, method, score, auc=None, total_s=10.0):
    cell = make_cell(env, adv, mix, ratio, seed, method)
    return cell, {
        "format": report.CELL_FORMAT,
        "version": report.CELL_VERSION,
        "cell": {
            "env_id": cell.env_id,
            "adversary": cell.adversary,
            "mix": cell.mix,
            "ratio": cell.ratio,
            "seed": cell.seed,
            "method": cell.method,
        },
        "budget": {
            "episodes": 10,
            "steps": 100,
            "bcnd_steps": 10,
            "bcnd_ensemble": 5,
            "bcnd_rounds": 3,
            "eval_episodes": 7,
            "num_envs": 7,
        },
        "normalized_score": score,
        "mean_return": score,
        "roc_auc": auc,
        "timings": {
            "train_s": total_s - 2,
            "eval_s": 2.0,
            "score_s": 0.0,
            "total_s": total_s,
            "cpu_s": total_s / 2,
        },
        "finished": "2026-01-01T00:00:00+00:00",
    }


def test_render_only_on_an_empty_folder_says_what_to_pass(tmp_path, capsys):
    results = tmp_path / "report.md"
    code = cli_main(
        ["report", "--render-only", "--out", str(tmp_path / "nothing"), "--results", str(results)]
    )
    assert code == 2 and not results.exists()
    err = capsys.readouterr().err
    assert "nothing to render" in err and "--out names the run folder" in err


def test_markdown_renders_the_cell_numbers(tmp_path):
    root = tmp_path / "run"
    env = "HalfCheetah-v5"
    scores = {  # (ratio, method) -> per-seed normalized scores
        (0.0, "choicenet"): [97.0, 99.0],
        (0.0, "mse"): [98.0, 100.0],
        (0.0, "oracle"): [98.0, 100.0],
        (0.3, "choicenet"): [90.0, 94.0],
        (0.3, "mse"): [10.0, 20.0],
        (0.3, "oracle"): [95.0],  # seed 1 missing
    }
    aucs = {0.3: [0.99, 0.97]}
    for (ratio, method), values in scores.items():
        for seed, score in enumerate(values):
            auc = aucs[ratio][seed] if method == "choicenet" and ratio > 0 else None
            cell, rec = _record(env, "flipped", "step", ratio, seed, method, score, auc)
            write_json_atomic(cell.path(root), rec)
    grid = {
        "envs": [env, "Ant-v5"],
        "adversaries": ["flipped"],
        "mixes": ["step"],
        "ratios": [0.0, 0.3],
        "seeds": [0, 1],
        "methods": ["choicenet", "mse", "oracle"],
        "budget": _record(env, "flipped", "step", 0, 0, "mse", 0)[1]["budget"],
        "skipped_envs": {"Ant-v5": "no shipped expert; train one with `choicebc expert train`"},
    }
    write_json_atomic(root / "grid.json", grid)
    results = tmp_path / "out" / "report.md"
    # through the CLI: --render-only reads the cell JSONs alone, no training
    assert cli_main(["report", "--render-only", "--out", str(root), "--results", str(results)]) == 0
    text = results.read_text()
    assert "| method | 0 % | 30 % |" in text
    assert "| ChoiceNet-BC | 98.0 ± 1.0 | **92.0 ± 2.0** |" in text
    assert "| MSE-BC | **99.0 ± 1.0** | 15.0 ± 5.0 |" in text
    assert "| Oracle MSE-BC (clean steps only) | 99.0 ± 1.0 | 95.0 (n=1) |" in text
    assert f"| ChoiceNet-BC | {np.mean([0.99, 0.97]):.3f} ± {np.std([0.99, 0.97]):.3f} |" in text
    # missing: oracle seed 1 at 30 %, and every Ant-v5 cell (2 ratios x 2 seeds x 3 methods)
    assert "13 cells of the grid have no result yet" in text
    assert "- **Ant-v5**: all 12 cells" in text
    assert "30 % s1 oracle" in text
    # wall time: per method and in all
    assert "| ChoiceNet-BC | 4 | 8 | 2 | 10 | 40 s |" in text
    assert "Sum over all cells: 110 s" in text
    assert "CPU time of 11 cells: 55 s" in text
    png = results.parent / "report_figures" / "HalfCheetah-v5.png"
    assert png.stat().st_size > 0 and png.with_suffix(".svg").stat().st_size > 0
    assert "(report_figures/HalfCheetah-v5.png)" in text

    # rendering again from the same files gives the same report (bar its timestamp line)
    render_report(root, results)

    def body(t: str) -> list[str]:
        return [line for line in t.splitlines() if not line.startswith("Generated")]

    assert body(results.read_text()) == body(text)


def test_quick_preset_and_method_selection():
    cfg = ReportConfig(quick=True).resolved()
    assert cfg.envs == ("HalfCheetah-v5",) and cfg.adversaries == ("flipped",)
    assert cfg.mixes == ("step",) and cfg.ratios == (0.0, 0.3, 0.5) and cfg.seeds == (0,)
    assert cfg.eval_episodes == 100 and cfg.steps == QUICK["steps"]
    assert cfg.budget == Budget(steps=QUICK["steps"], bcnd_steps=QUICK["bcnd_steps"])
    # a flag the user set wins over the preset
    assert ReportConfig(quick=True, steps=123).resolved().steps == 123
    # every available method by default; the oracle is always there
    names = ReportConfig().method_names()
    assert names[:3] == ["choicenet", "choicenet_episode", "choicenet_auto"]
    assert "pbc" in names and names[-1] == "oracle"
    assert ReportConfig(methods=("l1",)).method_names() == ["l1", "oracle"]
    with pytest.raises(ReportError, match="unknown methods"):
        ReportConfig(methods=("nope",)).method_names()
    with pytest.raises(ReportError, match="outside"):
        ReportConfig(ratios=(1.5,)).validate()
    ReportConfig(mixes=("step", "episode", "label")).validate()  # label: opt-in
    with pytest.raises(ReportError, match="mix must be one of"):
        ReportConfig(mixes=("steps",)).validate()


def test_ray_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayUnavailableError, match=r"choicebc\[cluster\]"):
        report.import_ray()


def test_render_only_skips_unreadable_cells_and_names_them(tmp_path, capsys):
    root = tmp_path / "run"
    cell, rec = _record("HalfCheetah-v5", "flipped", "step", 0.3, 0, "mse", 50.0)
    write_json_atomic(cell.path(root), rec)
    not_utf8 = cell.path(root).with_name("l1.json")
    not_utf8.write_bytes(b'\xff\xfe{"format": 1}')
    not_an_object = cell.path(root).with_name("choicenet.json")
    not_an_object.write_text("[1, 2]")
    results = tmp_path / "report.md"
    code = cli_main(["report", "--render-only", "--out", str(root), "--results", str(results)])
    assert code == 0
    err = capsys.readouterr().err
    assert f"skipping unreadable cell {not_utf8}" in err
    assert f"skipping unreadable cell {not_an_object}" in err
    assert "from 1 cell files" in results.read_text()


def test_percent_bc_keeps_the_top_episodes_by_return_and_ranks_by_it():
    from choicebc.envs import POINT_REACH_ID, PointReachExpert

    import choicebc as cb

    expert = PointReachExpert()
    demos = cb.collect(
        POINT_REACH_ID, expert, cb.make_adversary("flipped", expert), ratio=0.3, mix="episode",
        episodes=20, seed=0, progress=False,
    )  # fmt: skip
    kept = report.top_episodes_by_return(demos, 0.7)
    assert kept.num_episodes == 14
    assert kept.episode_returns.min() >= np.sort(demos.episode_returns)[-14]
    ranking = report.demo_scores("pbc", None, demos)
    np.testing.assert_array_equal(ranking, demos.episode_returns)
    assert report.demo_scores("mse", None, demos) is None
    spec = report.METHODS["pbc"]
    assert spec.uses_rewards and "uses rewards" in spec.label


def test_a_results_path_that_cannot_be_written_is_refused_before_any_cell(
    tmp_path, capsys, read_only_folder
):
    results = read_only_folder / "report.md"
    code = cli_main(["report", "--render-only", "--out", str(tmp_path), "--results", str(results)])
    assert code == 2
    assert str(results) in capsys.readouterr().err


def test_headline_compares_choicenet_with_the_best_reward_free_peer_and_the_oracle():
    env = "HalfCheetah-v5"
    scores = {  # (mix, ratio, method) -> normalized score, seed 0
        ("step", 0.2, "choicenet"): 97.9,
        ("step", 0.2, "choicenet_auto"): 96.8,  # auto wins over the per-step choice
        ("step", 0.2, "l1"): 96.4,
        ("step", 0.2, "gmm"): 96.0,
        ("step", 0.2, "oracle"): 96.3,
        ("step", 0.4, "choicenet"): 81.2,  # no auto cell: the per-step choice
        ("step", 0.4, "mse"): 4.8,
        ("episode", 0.2, "choicenet_auto"): 94.7,
        ("episode", 0.2, "choicenet_episode"): 94.7,  # a ChoiceNet variant: no peer
        ("episode", 0.2, "pbc"): 98.2,  # reads rewards: no peer
        ("episode", 0.2, "bcnd"): -1.2,
        ("episode", 0.2, "oracle"): 99.7,
    }
    records = [_record(env, "flipped", m, r, 0, meth, v)[1] for (m, r, meth), v in scores.items()]
    records.append(_record(env, "flipped", "step", 0.4, 1, "l1", 90.0)[1])  # seed 1: not shown
    records.append(_record(env, "random", "step", 0.4, 0, "l1", 90.0)[1])  # random: not shown
    table = report.headline_table(records).splitlines()
    assert table[-6:] == [
        "| mixing | corrupt | ChoiceNet-BC | best reward-free peer | oracle |",
        "|---|---:|---:|---:|---:|",
        "| step | 20 % | 96.8 (auto) | 96.4 (L1-BC) | 96.3 |",
        "| step | 40 % | 81.2 (step) | 4.8 (MSE-BC) | — |",
        "| episode | 20 % | 94.7 (auto) | -1.2 (BCND) | 99.7 |",
        "| episode | 40 % | — | — | — |",
    ]


def test_a_folders_grid_grows_run_by_run():
    from choicebc.report.grid import merge_grids

    budget = {"episodes": 100}
    old = {
        "envs": ["HalfCheetah-v5", "Ant-v5"],
        "adversaries": ["flipped"],
        "mixes": ["step"],
        "ratios": [0.1, 0.2],
        "seeds": [0],
        "methods": ["choicenet", "oracle"],
        "budget": budget,
        "skipped_envs": {"Ant-v5": "no shipped expert"},
    }
    new = {
        "envs": ["Ant-v5"],
        "adversaries": ["random"],
        "mixes": ["episode"],
        "ratios": [0.2, 0.4],
        "seeds": [0],
        "methods": ["mse", "oracle"],
        "budget": budget,
        "skipped_envs": {},
    }
    merged = merge_grids(old, new)
    assert merged["envs"] == ["HalfCheetah-v5", "Ant-v5"]
    assert merged["adversaries"] == ["flipped", "random"]
    assert merged["ratios"] == [0.1, 0.2, 0.4]
    assert merged["methods"] == ["choicenet", "oracle", "mse"]
    assert merged["skipped_envs"] == {}  # Ant ran this time
    assert merge_grids({**old, "budget": {"episodes": 5}}, new) == new  # another budget
    assert merge_grids("not a grid", new) == new
