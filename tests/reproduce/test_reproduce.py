"""`denseloss reproduce`: resumable runner, aggregation, tables, and one real tiny study."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from denseloss.reproduce import BUDGETS, Budget, run_study, study_runs
from denseloss.reproduce.tables import aggregate, format_tables, study_figure

TINY = Budget(
    steps=2,
    adapt_steps=1,
    size=32,
    train_length=8,
    val_length=4,
    test_length=4,
    batch_size=2,
    seeds=(0, 1),
    fractions=(0.5,),
)


def _fake_train(calls: list):
    def train(cfg):
        calls.append(cfg)
        score = 0.1 * cfg.train.seed + (0.5 if cfg.method == "maxsquare" else 0.2)
        out = {"test": {"miou": score}, "method": cfg.method}
        return out

    return train


def _quiet_train(cfg):
    """The real trainer, evaluating one batch per split (fast)."""
    from denseloss.training.trainer import train

    return train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_batches=1)))


def test_every_study_builds_runs_with_known_methods():
    from denseloss.methods import METHODS

    for study in ("semi", "uda", "scribble", "full", "real"):
        runs = study_runs(study, "quick")
        assert runs, study
        keys = [r.key for r in runs]
        assert len(keys) == len(set(keys))
        for r in runs:
            assert r.config.method in METHODS
            assert r.init_from is None or keys.index(r.init_from) < keys.index(r.key)
    with pytest.raises(ValueError, match="study"):
        study_runs("nope")
    with pytest.raises(ValueError, match="budget"):
        study_runs("semi", "huge")


def test_schedules_scale_with_the_budget():
    semi = {r.key: r for r in study_runs("semi", TINY)}
    assert semi["1_2-advsemi"].config.params["semi_start"] == TINY.steps // 4
    full = {r.key: r for r in study_runs("full", BUDGETS["full"])}
    assert full["pixel_contrast"].config.params["warmup_steps"] == BUDGETS["full"].steps // 8


def test_runner_skips_finished_runs_and_chains_init(tmp_path):
    calls: list = []
    out = run_study(
        "uda",
        budget=TINY,
        out=tmp_path,
        only=("maxsquare",),
        train_fn=_fake_train(calls),
        log=lambda s: None,
    )
    # maxsquare depends on source_only: both ran for both seeds, the dependency first
    assert [c.method for c in calls] == ["source_only"] * 2 + ["maxsquare"] * 2
    ms = [c for c in calls if c.method == "maxsquare"]
    assert ms[0].params["init_from"].endswith("source_only/seed0/checkpoints/last.ckpt")
    assert ms[0].train.steps == TINY.adapt_steps
    cell = out["tables"]["seg"]["cells"]["synthetic→real"]["maxsquare"]["miou"]
    assert cell["mean"] == pytest.approx(statistics.fmean([0.5, 0.6]))
    assert cell["std"] == pytest.approx(statistics.stdev([0.5, 0.6]))
    assert (tmp_path / "uda" / "table.md").exists()
    assert (tmp_path / "uda" / "figure.png").stat().st_size > 0
    # a rerun trains nothing: every result is on disk
    calls.clear()
    run_study(
        "uda",
        budget=TINY,
        out=tmp_path,
        only=("maxsquare",),
        train_fn=_fake_train(calls),
        log=lambda s: None,
    )
    assert calls == []
    with pytest.raises(ValueError, match="only"):
        run_study("uda", budget=TINY, out=tmp_path, only=("nope",), train_fn=_fake_train([]))


def test_table_marks_the_best_mean_in_bold(tmp_path):
    out = run_study(
        "uda",
        budget=TINY,
        out=tmp_path,
        only=("maxsquare",),
        train_fn=_fake_train([]),
        log=lambda s: None,
    )
    md = format_tables("uda", out["tables"], TINY, (0, 1))
    row = next(line for line in md.splitlines() if line.startswith("| synthetic→real"))
    assert "**55.0 ± 7.1**" in row  # maxsquare (50, 60) beats source_only (20, 30)
    assert "25.0 ± 7.1" in row


def test_real_tiny_study_end_to_end(tmp_path):
    """Two real training runs (source-only, then MaxSquare from its checkpoint) at 32²."""

    out = run_study(
        "uda",
        budget=dataclasses.replace(TINY, seeds=(0,)),
        out=tmp_path,
        only=("maxsquare",),
        train_fn=_quiet_train,
        log=lambda s: None,
    )
    res = json.loads((tmp_path / "uda" / "maxsquare" / "seed0" / "results.json").read_text())
    assert res["method"] == "maxsquare"
    assert res["steps"] == TINY.adapt_steps
    assert 0.0 <= res["test"]["miou"] <= 1.0
    assert out["tables"]["seg"]["cells"]["synthetic→real"]["source_only"]["miou"]["n"] == 1


def test_cli_reproduce_rejects_unknown_study():
    from denseloss.cli.app import run

    assert run(["reproduce", "nope"]) == 2


def _module_level_fake(cfg):
    return {"test": {"miou": 0.1 * cfg.train.seed + (0.5 if cfg.method == "maxsquare" else 0.2)}}


def test_parallel_jobs_give_the_same_tables(tmp_path):
    kw = {
        "budget": TINY,
        "only": ("maxsquare",),
        "train_fn": _module_level_fake,
        "log": lambda s: None,
    }
    one = run_study("uda", out=tmp_path / "a", jobs=1, **kw)
    two = run_study("uda", out=tmp_path / "b", jobs=2, threads=1, **kw)
    assert one["tables"] == two["tables"]


def test_tables_only_trains_nothing_and_marks_missing_runs(tmp_path):
    run_study(
        "uda",
        budget=TINY,
        out=tmp_path,
        only=("source_only",),
        train_fn=_module_level_fake,
        log=lambda s: None,
    )
    calls: list = []
    out = run_study(
        "uda",
        budget=TINY,
        out=tmp_path,
        only=("maxsquare",),
        train_fn=_fake_train(calls),
        log=lambda s: None,
        tables_only=True,
    )
    assert calls == []
    cells = out["tables"]["seg"]["cells"]["synthetic→real"]
    assert cells["source_only"]["miou"]["n"] == 2
    assert cells["maxsquare"]["miou"]["n"] == 0
    assert "—" in out["markdown"]


def test_real_tiny_uda_study_reports_adabn_cells(tmp_path):
    """A trained source-only run, then its AdaBN cell: BN re-estimated on target images."""

    out = run_study(
        "uda",
        budget=dataclasses.replace(TINY, seeds=(0,)),
        out=tmp_path,
        only=("source_only+adabn",),
        train_fn=_quiet_train,
        log=lambda s: None,
        adabn_images=4,
    )
    run_dir = tmp_path / "uda" / "source_only" / "seed0"
    adabn = json.loads((run_dir / "results_adabn.json").read_text())
    assert adabn["bn_images"] == 4
    assert adabn["target"]["domain"] == "real"
    cells = out["tables"]["seg"]["cells"]
    bn = cells["synthetic→real, target BN re-estimated"]["source_only"]["miou"]
    assert bn["n"] == 1
    assert bn["values"] == [adabn["test"]["miou"]]
    # the plain row still reads the run's own results.json
    plain = json.loads((run_dir / "results.json").read_text())
    assert cells["synthetic→real"]["source_only"]["miou"]["values"] == [plain["test"]["miou"]]


def test_reestimate_batchnorm_gives_the_dataset_statistics():
    import torch

    from denseloss.reproduce.adabn import reestimate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Dropout(0.5))
    net[0].running_mean.fill_(5.0)  # stale source statistics
    data = [torch.randn(4, 3, 2, 2) * 2 + 1 for _ in range(3)]
    seen = reestimate_batchnorm(net, ({"image": x} for x in data), max_images=10)
    assert seen == 10
    used = torch.cat(data)[:10]
    # cumulative average of the per-batch means (batches of 4, 4, 2 images)
    means = [used[:4].mean((0, 2, 3)), used[4:8].mean((0, 2, 3)), used[8:].mean((0, 2, 3))]
    torch.testing.assert_close(net[0].running_mean, sum(means) / 3)
    assert net[0].momentum == 0.1  # restored
    assert net.training  # restored
    with pytest.raises(ValueError, match="BatchNorm"):
        reestimate_batchnorm(torch.nn.Conv2d(3, 3, 1), [{"image": data[0]}])


def _summary(mean: float, std: float) -> dict:
    cell = {"miou": {"mean": mean, "std": std, "n": 3, "values": []}}
    return {"seg": {"rows": ["r"], "cols": ["m"], "metrics": [], "cells": {"r": {"m": cell}}}}


def test_compare_flags_only_cells_beyond_two_std():
    from denseloss.reproduce.compare import compare_tables

    ref = _summary(0.60, 0.01)
    _, flagged = compare_tables("s", _summary(0.615, 0.01), ref)  # 1.5 std away
    assert flagged == 0
    md, flagged = compare_tables("s", _summary(0.63, 0.01), ref)  # 3 std away
    assert flagged == 1
    assert "**> 2 std**" in md
    # the larger spread of the two counts: 3 reference std but 1.5 of ours
    _, flagged = compare_tables("s", _summary(0.63, 0.02), ref)
    assert flagged == 0


def test_cli_reproduce_writes_apart_from_the_reference_and_compares(tmp_path, monkeypatch):
    from denseloss.cli.app import run

    monkeypatch.chdir(tmp_path)
    ref = tmp_path / "results" / "quick" / "semi"
    ref.mkdir(parents=True)
    (ref / "summary.json").write_text(json.dumps({"tables": {}}))
    assert run(["reproduce", "semi", "--quick", "--tables-only"]) == 0
    assert (tmp_path / "runs" / "reproduce" / "quick" / "semi" / "table.md").is_file()
    assert not (ref / "table.md").exists()  # the reference is never written
    report = (tmp_path / "runs" / "reproduce" / "quick" / "REPORT-semi.md").read_text()
    assert "against the committed reference" in report


def test_rerun_resumes_a_stopped_run_and_clears_a_stale_one(tmp_path):
    root = tmp_path / "uda"
    stopped = root / "source_only" / "seed0"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "last.ckpt").write_bytes(b"x")  # a run killed mid-way
    stale = root / "source_only" / "seed1"
    stale.mkdir(parents=True)
    (stale / "metrics.csv").write_text("step\n")  # killed before its first checkpoint
    calls: list = []
    run_study(
        "uda",
        budget=TINY,
        out=tmp_path,
        only=("source_only",),
        train_fn=_fake_train(calls),
        log=lambda s: None,
    )
    by_seed = {c.train.seed: c for c in calls}
    assert by_seed[0].train.resume == str(stopped)
    assert by_seed[1].train.resume is None
    assert not (stale / "metrics.csv").exists()


def test_threads_apply_to_in_process_runs_too(tmp_path):
    import torch

    seen: list[int] = []

    def record(cfg):
        seen.append(torch.get_num_threads())
        return {"test": {"miou": 0.5}}

    before = torch.get_num_threads()
    try:
        run_study(
            "uda",
            budget=TINY,
            out=tmp_path,
            only=("source_only",),
            train_fn=record,
            log=lambda s: None,
            jobs=1,
            threads=1,
        )
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1]


def test_study_figure_keeps_the_legend_off_the_bars():
    """Eight columns (the UDA study's width) once drew the legend over the second bar group."""
    runs = [r for r in study_runs("uda", TINY) if r.derived_from is None]
    cols = {r.col for r in runs}
    results = {(r.key, s): {"test": {"miou": 0.2 + 0.01 * s}} for r in runs for s in (0, 1)}
    tables = aggregate(runs, results, (0, 1))
    fig = study_figure(tables, title="uda")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            assert len(legend.get_texts()) == len(cols)
            box = legend.get_window_extent(renderer)
            plot_area = ax.get_window_extent(renderer)
            ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
            assert box.y1 <= plot_area.y0  # entirely below the plot area
            assert all(not box.overlaps(t) for t in ticks)  # and below the row labels
            assert "(%)" in ax.get_ylabel()  # the tables' units
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def _recording_train(cfg):
    """Writes what the trainer writes for the runner's check: config.yaml and resolved params."""
    from pathlib import Path

    from denseloss.config.schema import method_config, save_config
    from denseloss.training.trainer import resolved_params

    run_dir = Path(cfg.train.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    res = {"test": {"miou": 0.5}, "params": resolved_params(method_config(cfg))}
    (run_dir / "results.json").write_text(json.dumps(res))
    return res


def test_runner_refuses_a_finished_run_of_another_configuration(tmp_path):
    """A finished run is skipped only when it is the run the study defines now."""
    kw = {
        "budget": TINY,
        "out": tmp_path,
        "only": ("pce_gatedcrf",),
        "seeds": (0,),
        "log": lambda s: None,
    }
    run_study("scribble", train_fn=_recording_train, **kw)

    def fail(cfg):
        raise AssertionError("nothing should train")

    # the same definition, and an explicit value equal to the default: skipped
    def explicit_default(cfg):
        return dataclasses.replace(cfg, params={**cfg.params, "crf_weight": 0.1})

    run_study("scribble", train_fn=fail, **kw)
    run_study("scribble", train_fn=fail, overrides=explicit_default, **kw)

    def other_lr(cfg):
        return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.5))

    with pytest.raises(ValueError, match=r"another configuration .*optim\.lr"):
        run_study("scribble", train_fn=fail, overrides=other_lr, **kw)
    with pytest.raises(ValueError, match=r"another configuration .*train\.steps"):
        run_study("scribble", train_fn=fail, **{**kw, "budget": dataclasses.replace(TINY, steps=3)})
    # a default changed since the run trained: caught by the values results.json recorded
    path = tmp_path / "scribble" / "pce_gatedcrf" / "seed0" / "results.json"
    res = json.loads(path.read_text())
    res["params"]["crf_weight"] = 0.2
    path.write_text(json.dumps(res))
    with pytest.raises(ValueError, match=r"params\.crf_weight \(default\)"):
        run_study("scribble", train_fn=fail, **kw)
    # tables are never built from a mix either
    with pytest.raises(ValueError, match="delete that folder"):
        run_study("scribble", train_fn=fail, tables_only=True, **kw)
