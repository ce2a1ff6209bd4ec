"""Rendering the report: damaged run files are skipped and named; docs/results.md is what the
committed cells render to."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from choicebc.report.render import render_report

REPO = Path(__file__).resolve().parents[1]

NOT_UTF8 = b'\xff\xfe{"format": 1}'


def test_non_utf8_grid_and_runs_files_are_skipped_and_named(tmp_path, capsys):
    root = tmp_path / "run"
    damaged = [root / "grid.json", root / "runs.jsonl"]
    cache = root / "demos" / "Hopper-v5" / "x.json"  # the uncommitted demo cache is never read
    for path in [*damaged, cache]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(NOT_UTF8)
    results = render_report(root, tmp_path / "report.md")
    err = capsys.readouterr().err
    for path in damaged:
        assert f"skipping unreadable {path}" in err
    assert str(cache) not in err
    text = results.read_text()
    assert text.startswith("# Robustness report") and "from 0 cell files" in text


def test_a_damaged_line_of_runs_jsonl_is_skipped_and_the_other_runs_kept(tmp_path, capsys):
    root = tmp_path / "run"
    root.mkdir()
    (root / "grid.json").write_text("{}")
    run = '{"started": "2026-12-05T00:00:00+00:00", "wall_s": 12.0, "cells_run": 3, '
    run += '"cells_failed": 0, "workers": 2, "ray_address": null}'
    (root / "runs.jsonl").write_text(run + "\n" + '{"started": "2026-12-0' + "\n")
    text = render_report(root, tmp_path / "report.md").read_text()
    assert f"skipping unreadable line 2 of {root / 'runs.jsonl'}" in capsys.readouterr().err
    assert "| 2026-12-05T00:00:00+00:00 | 3 | 0 | 2 | 12 s |" in text


def test_docs_results_md_is_rendered_from_the_committed_cells(tmp_path, monkeypatch):
    """docs/results.md is exactly what the committed run folder renders to (figures skipped)."""
    run = REPO / "docs" / "report"
    if not (run / "cells").is_dir():
        pytest.skip("no committed report cells here (not a repository checkout)")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report").symlink_to(run)  # the same relative paths as the command's
    monkeypatch.chdir(tmp_path)
    rendered = render_report("docs/report", "docs/results.md", figures=False).read_text()
    committed = (REPO / "docs" / "results.md").read_text()
    diff = list(
        difflib.unified_diff(committed.splitlines(), rendered.splitlines(), lineterm="", n=1)
    )
    assert not diff, (
        "docs/results.md is not what the committed cells render to; re-render it with "
        "`choicebc report --render-only --out docs/report --results docs/results.md`:\n"
        + "\n".join(diff[:40])
    )


def test_the_readme_shows_the_rendered_headline():
    """README.md's headline table is the one the committed cells render to, word for word."""
    from choicebc.report.grid import read_cells
    from choicebc.report.render import headline_table

    if not (REPO / "docs" / "report" / "cells").is_dir():
        pytest.skip("no committed report cells here (not a repository checkout)")
    headline = headline_table(read_cells(REPO / "docs" / "report")).strip()
    assert headline in (REPO / "README.md").read_text(), (
        "README.md's headline is not what the committed cells render to: paste the headline "
        "section of docs/results.md (choicebc report --render-only ...) into README.md\n" + headline
    )
