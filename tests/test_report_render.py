"""Rendering the report: damaged run files are skipped and named."""

from __future__ import annotations

from choicebc.report.render import render_report

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
