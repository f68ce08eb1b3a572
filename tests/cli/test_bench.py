"""Tests of the loss benchmark (structure, pairing and bookkeeping: no timing assertions)."""

from __future__ import annotations

import pytest
import torch

from denseloss import losses as L
from denseloss.bench import losses as B
from denseloss.bench.losses import CASES, PEERS, bench_losses, format_table, run_bench


def _table_rows(out: str) -> list[list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    return [c for c in cells if c[1] != "logits shape"]


def test_quick_bench_has_a_row_per_loss_and_positive_ratios(capsys):
    assert run_bench(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    main = rows[: len(CASES)]
    assert [r[0] for r in main] == [c.name for c in CASES]
    for cells in rows:
        if cells[-1]:  # a note: not available / skipped / error
            assert not cells[-1].startswith("error"), cells
            continue
        assert float(cells[3]) > 0  # time / CE
        assert float(cells[6]) >= 0  # peak / CE (tiny losses allocate ~0)
    assert "### Pairwise losses" in out
    assert "Machine:" in out
    assert "load average" in out


def test_bench_rows_for_selected_losses():
    rows = bench_losses([(1, 3, 16, 16)], repeats=2, losses=["max_square", "adversarial"])
    assert [r["loss"] for r in rows] == ["cross_entropy", "max_square", "adversarial"]
    assert rows[0]["time_ratio"] == 1.0
    assert rows[0]["memory_ratio"] == 1.0
    assert all(r["status"] == "ok" and r["time_ratio"] > 0 and r["peak_mb"] > 0 for r in rows[:2])
    table = format_table(rows)
    assert table.count("\n") == 1 + len(rows)


def test_peers_follow_their_row_and_are_paired():
    rows = bench_losses(
        [(1, 4, 16, 16)], repeats=1, losses=["entropy", "gated_crf", "dense_crf(fast)"], peers=True
    )
    names = [r["loss"] for r in rows]
    assert names == [
        "cross_entropy",
        "entropy",
        "entropy[ADVENT]",
        "gated_crf",
        "gated_crf[unfold]",
        "dense_crf(fast)",
        "dense_crf[pydensecrf]",
    ]
    by = {r["loss"]: r for r in rows}
    for peer in ("entropy[ADVENT]", "gated_crf[unfold]"):
        assert by[peer]["status"] == "ok"
        assert by[peer]["vs_denseloss"] > 0
        assert by[peer]["peer_of"] in names
    crf = by["dense_crf[pydensecrf]"]
    assert crf["status"] == "ok" or crf["status"].startswith("not available")
    assert {p.peer_of for p in PEERS} <= {c.name for c in CASES}


def test_a_row_that_does_no_work_is_skipped():
    # 16² logits → 2² embeddings: no class has more than max_views pixels, the loss returns 0.
    rows = bench_losses([(1, 3, 16, 16)], repeats=1, losses=["pixel_contrast"])
    assert rows[1]["status"].startswith("skipped: no work")
    assert rows[1]["time_ms"] is None


def test_thread_count_is_restored_after_each_call():
    threads = torch.get_num_threads()

    def rude(x):  # a peer that changes the thread count, as an OpenMP C++ extension can
        torch.set_num_threads(1)
        return L.cross_entropy(x["logits"], x["labels"])

    rows = B._bench_shape((1, 3, 8, 8), [B.Case("rude", rude)], 1, threads)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert torch.get_num_threads() == threads


def test_dfr_keeps_no_full_resolution_deep_map():
    # DFR's peak above Gated CRF's (same window) stays well below one deep map at full size.
    rows = {r["loss"]: r for r in bench_losses([(1, 19, 64, 64)], 1, ["gated_crf", "dfr"])}
    full_deep_mb = B.DEEP_DIM * 64 * 64 * 4 / 2**20
    assert rows["dfr"]["peak_mb"] - rows["gated_crf"]["peak_mb"] < 0.5 * full_deep_mb


def test_bench_errors():
    with pytest.raises(ValueError, match="losses"):
        bench_losses([(1, 3, 8, 8)], losses=["nope"])
    with pytest.raises(ValueError, match="repeats"):
        bench_losses([(1, 3, 8, 8)], repeats=0)
    with pytest.raises(ValueError, match="shapes"):
        bench_losses([(3, 8, 8)])
    with pytest.raises(SystemExit):
        run_bench(["--repeats", "0"])
