"""Studies that reproduce each method's gain over its baseline (``denseloss reproduce``)."""

from denseloss.reproduce.runner import run_study
from denseloss.reproduce.studies import BUDGETS, QUICK_STUDIES, STUDIES, Budget, Run, study_runs
from denseloss.reproduce.tables import aggregate, format_tables, plot_study

__all__ = [
    "BUDGETS",
    "QUICK_STUDIES",
    "STUDIES",
    "Budget",
    "Run",
    "aggregate",
    "format_tables",
    "plot_study",
    "run_study",
    "study_runs",
]
