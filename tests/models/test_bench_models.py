"""``denseloss bench models`` runs (tiny rows); the timing itself is not asserted."""

from __future__ import annotations

import pytest

from denseloss.bench.models import DEFAULT_ROWS, Row, bench_models, format_table, run_bench

TINY = {"layers": (1, 1, 1, 1), "width": 4}


def test_default_rows_are_the_papers_networks_and_crops():
    crops = {(r.network, r.height, r.width) for r in DEFAULT_ROWS}
    assert ("deeplabv2_resnet101", 321, 321) in crops
    assert ("deeplabv2_resnet101_multi", 512, 1024) in crops
    assert ("deeplabv3plus_resnet101", 512, 1024) in crops
    assert {r.batch for r in DEFAULT_ROWS} <= {1, 2}


def test_bench_rows_in_process_and_isolated():
    rows = (
        Row("deeplabv2_resnet101_multi", 33, 40, 2, kwargs=TINY, note="tiny"),
        Row("vit_b16", 32, 48, 1, kwargs={"embed_dim": 16, "depth": 1, "num_heads": 2}),
    )
    results = bench_models(rows, isolate=False, iterations=1, warmup=0)
    assert [r["network"] for r in results] == ["deeplabv2_resnet101_multi", "vit_b16"]
    for r in results:
        assert r["seconds_per_iter"] > 0
        assert r["cpu_seconds_per_iter"] > 0
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["seconds_per_iter"])
        assert 0 < r["params_m"] < 1
    (isolated,) = bench_models(rows[:1], isolate=True, iterations=1, warmup=0)
    assert 0.05 < isolated["peak_gib"] < 8  # a fresh process: the runtime plus the tiny net
    table = format_table(results).splitlines()
    assert table[2].startswith("| `deeplabv2_resnet101_multi` | 33×40 tiny | 2 |")


def test_unknown_network_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        run_bench(["--networks", "resnet18"])
    assert "--networks must name rows among" in capsys.readouterr().err
