"""Tests of the loss benchmark (structure only: no timing assertions)."""

from __future__ import annotations

import pytest

from denseloss.bench.losses import CASES, bench_losses, format_table, run_bench


def test_quick_bench_has_a_row_per_loss_and_positive_ratios(capsys):
    assert run_bench(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    table_rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    names = [line.split("|")[1].strip() for line in table_rows[1:]]
    assert names == [name for name, _, _ in CASES]
    for line in table_rows[1:]:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells[-1]:  # a note: not available / skipped / error
            continue
        time_ratio, mem_ratio = float(cells[3]), float(cells[5])
        assert time_ratio > 0
        assert mem_ratio > 0
    assert "Machine:" in out


def test_bench_rows_for_selected_losses():
    rows = bench_losses([(1, 3, 16, 16)], repeats=1, losses=["max_square", "adversarial"])
    assert [r["loss"] for r in rows] == ["cross_entropy", "max_square", "adversarial"]
    assert rows[0]["time_ratio"] == 1.0
    assert rows[0]["memory_ratio"] == 1.0
    assert all(r["status"] == "ok" and r["time_ratio"] > 0 and r["peak_mb"] > 0 for r in rows[:2])
    table = format_table(rows)
    assert table.count("\n") == 1 + len(rows)


def test_dense_crf_skipped_above_256_squared():
    rows = bench_losses([(1, 2, 257, 256)], repeats=1, losses=["dense_crf(fast)"])
    assert rows[1]["status"].startswith(("skipped", "not available"))
    assert rows[1]["time_ms"] is None


def test_bench_errors():
    with pytest.raises(ValueError, match="losses"):
        bench_losses([(1, 3, 8, 8)], losses=["nope"])
    with pytest.raises(ValueError, match="repeats"):
        bench_losses([(1, 3, 8, 8)], repeats=0)
    with pytest.raises(ValueError, match="shapes"):
        bench_losses([(3, 8, 8)])
    with pytest.raises(SystemExit):
        run_bench(["--repeats", "0"])
