"""``denseloss reproduce``: run the studies behind the README's tables."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from denseloss.cli.app import CliParser


def _parser() -> argparse.ArgumentParser:
    from denseloss.reproduce import QUICK_STUDIES, STUDIES

    p = CliParser(
        prog="denseloss reproduce",
        description=(
            "Run named studies (mean ± std over seeds, markdown table + figure per study). "
            "Finished runs are skipped on a rerun, so a study can be stopped and continued."
        ),
    )
    p.add_argument(
        "studies",
        nargs="*",
        metavar="STUDY",
        help=f"studies among {sorted(STUDIES)} (default: {' '.join(QUICK_STUDIES)})",
    )
    p.add_argument("--quick", action="store_true", help="the reduced budget (README main job)")
    p.add_argument("--budget", choices=["quick", "full"], default=None, help="budget name")
    p.add_argument("--out", default=None, help="output root (default runs/reproduce/<budget>)")
    p.add_argument(
        "--reference",
        default=None,
        help="committed reference results to compare with (default results/<budget>; "
        "'none' to skip)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds")
    p.add_argument("--only", nargs="+", default=None, help="run keys to restrict a study to")
    p.add_argument("--steps", type=int, default=None, help="override the steps of every run")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained at once, one process each (default: 2 with --quick, else 1)",
    )
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="train nothing: rebuild tables and figures from the finished runs on disk",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per run process")
    p.add_argument("--accelerator", default=None, help="cpu, cuda or auto")
    p.add_argument("--devices", type=int, default=None, help="processes per run (DDP when > 1)")
    p.add_argument("--precision", default=None, help="32-true, bf16-mixed or 16-mixed")
    p.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local: train here; slurm: write a SLURM job array (one task per run and seed) "
        "under <out>/slurm and exit (docs/scaling.md)",
    )
    p.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --launcher slurm: an #SBATCH option such as partition=gpu (repeatable)",
    )
    p.add_argument(
        "--array-limit", type=int, default=None, help="with --launcher slurm: tasks run at once"
    )
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss reproduce``; returns the exit status."""
    from denseloss.reproduce import QUICK_STUDIES, STUDIES, run_study
    from denseloss.reproduce.compare import compare_tables, load_reference

    args = _parser().parse_args(argv)
    budget = args.budget or ("quick" if args.quick or not args.studies else "full")
    studies = list(args.studies) or list(QUICK_STUDIES)
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        raise ValueError(
            f"denseloss reproduce: studies must be among {sorted(STUDIES)}; got {unknown}."
        )
    # Runs land apart from the committed reference, so a fresh clone really trains; the runner
    # skips only the finished runs of its own output folder.
    out = Path(args.out or f"runs/reproduce/{budget}")
    reference = None if args.reference == "none" else Path(args.reference or f"results/{budget}")
    if reference is not None and reference.resolve() == out.resolve():
        reference = None  # comparing a folder with itself says nothing

    def overrides(cfg: Any) -> Any:
        train: dict[str, Any] = {}
        if args.steps is not None:
            train["steps"] = args.steps
        if args.accelerator is not None:
            train["accelerator"] = args.accelerator
        if args.devices is not None:
            train["devices"] = args.devices
        if args.precision is not None:
            train["precision"] = args.precision
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))

    if args.launcher == "slurm":
        from denseloss.reproduce.launchers import write_slurm_array

        written = write_slurm_array(
            studies,
            budget=budget,
            out=out,
            seeds=tuple(args.seeds) if args.seeds else None,
            only=tuple(args.only) if args.only else None,
            overrides=overrides,
            sbatch=args.sbatch,
            array_limit=args.array_limit,
        )
        print(written["message"])
        return 0

    start = time.perf_counter()
    parts = []
    for study in studies:
        summary = run_study(
            study,
            budget=budget,
            out=out,
            seeds=tuple(args.seeds) if args.seeds else None,
            only=tuple(args.only) if args.only else None,
            overrides=overrides,
            jobs=args.jobs if args.jobs is not None else (2 if budget == "quick" else 1),
            threads=args.threads,
            tables_only=args.tables_only,
        )
        parts.append(summary["markdown"])
        print(summary["markdown"])
        ref = load_reference(reference / study / "summary.json") if reference else None
        if ref is not None:
            text, flagged = compare_tables(study, summary["tables"], ref)
            parts.append(text)
            print(text)
            print(f"[{study}] {flagged} cell(s) differ from {reference} by more than 2 std")
    minutes = (time.perf_counter() - start) / 60
    timing = "" if args.tables_only else f"\n\n_Total wall time: {minutes:.1f} min._"
    report = "\n\n".join(parts) + timing + "\n"
    out.mkdir(parents=True, exist_ok=True)
    # one report per set of studies, so running `real` alone never overwrites the quick report
    name = "REPORT.md" if studies == list(QUICK_STUDIES) else f"REPORT-{'-'.join(studies)}.md"
    (out / name).write_text(report)
    print(f"denseloss reproduce: wrote {out / name} ({minutes:.1f} min)")
    return 0
