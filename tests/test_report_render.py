"""`report --render-only` survives damaged run files: each is skipped with a warning naming it."""

from __future__ import annotations

from choicebc.report_render import render_report

NOT_UTF8 = b'\xff\xfe{"format": 1}'


def test_non_utf8_grid_runs_and_demo_files_are_skipped_and_named(tmp_path, capsys):
    root = tmp_path / "run"
    damaged = [root / "grid.json", root / "runs.jsonl", root / "demos" / "Hopper-v5" / "x.json"]
    for path in damaged:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(NOT_UTF8)
    results = render_report(root, tmp_path / "report.md")
    err = capsys.readouterr().err
    for path in damaged:
        assert f"skipping unreadable {path}" in err
    text = results.read_text()
    assert text.startswith("# Robustness report") and "from 0 cell files" in text
