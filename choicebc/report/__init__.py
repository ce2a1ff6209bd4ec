"""The robustness report: every method × env × adversary × mix × corruption ratio × seed.

``choicebc report`` runs the missing cells of the grid and renders the markdown report from
the cell files. Modules, each importing only those above it:

* :mod:`~choicebc.report.methods` — the methods (:data:`METHODS`) and how each is trained;
* :mod:`~choicebc.report.grid` — settings, budget, cells, cell files, the code version;
* :mod:`~choicebc.report.executors` — where tasks run: this process, worker processes, Ray;
* :mod:`~choicebc.report.render` — the markdown and figures, from a run folder alone;
* :mod:`~choicebc.report.runner` — running cells and the report, and the CLI.
"""

from __future__ import annotations

from choicebc.report.executors import RayUnavailableError, import_ray
from choicebc.report.grid import (
    CELL_FORMAT,
    CELL_VERSION,
    QUICK,
    Budget,
    Cell,
    ReportConfig,
    cell_of,
    code_version,
    grid_cells,
    make_cell,
    read_cells,
    write_cell,
)
from choicebc.report.methods import (
    METHODS,
    BudgetFlags,
    Method,
    ReportError,
    available_methods,
    demo_scores,
    top_episodes_by_return,
    train_method,
)
from choicebc.report.render import headline_table, render_report
from choicebc.report.runner import (
    add_arguments,
    collect_demos,
    run,
    run_cell,
    run_report,
)

__all__ = [
    "CELL_FORMAT",
    "CELL_VERSION",
    "METHODS",
    "QUICK",
    "Budget",
    "BudgetFlags",
    "Cell",
    "Method",
    "RayUnavailableError",
    "ReportConfig",
    "ReportError",
    "add_arguments",
    "available_methods",
    "cell_of",
    "code_version",
    "collect_demos",
    "demo_scores",
    "grid_cells",
    "headline_table",
    "import_ray",
    "make_cell",
    "read_cells",
    "render_report",
    "run",
    "run_cell",
    "run_report",
    "top_episodes_by_return",
    "train_method",
    "write_cell",
]
