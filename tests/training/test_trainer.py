from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from denseloss.config.schema import RunConfig, load_config
from denseloss.methods.base import NonFiniteLossError
from denseloss.training.checkpoint import load_checkpoint
from denseloss.training.logging import read_metrics_csv
from denseloss.training.trainer import train
from tests.training.tiny_method import TinyMethod, TinyReturnsNaN, TinyUDAMethod


def _with(config: RunConfig, **train_kw: object) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train_kw))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run_dir)
    flat = {f"net.{k}": v for k, v in state["method"]["module/net"].items()}
    for i, s in state["method"]["optimizer/net"]["state"].items():
        flat[f"momentum.{i}"] = s["momentum_buffer"]
    return flat


def test_train_writes_logs_checkpoint_results_and_curves(tiny_config: RunConfig) -> None:
    results = train(tiny_config, method_cls=TinyMethod)
    out = Path(tiny_config.train.out_dir)
    for name in ("config.yaml", "metrics.csv", "results.json", "curves.png"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir()), "no TensorBoard event file"
    assert load_config(out / "config.yaml") == tiny_config
    saved = json.loads((out / "results.json").read_text())
    assert saved["steps"] == 6
    assert saved["images_per_s"] > 0
    assert 0.0 <= saved["val"]["miou"] <= 1.0
    assert set(saved["test"]) >= {"miou", "pixel_acc", "boundary_f1", "iou"}
    assert results["val"]["miou"] == saved["val"]["miou"]
    # every hyperparameter as resolved, defaults included (reproduce compares them on reruns)
    assert saved["params"] == {"width": 8, "dropout": 0.1, "nan_at": None, **tiny_config.params}
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # one row per logged step
    assert "val/miou" in rows[2]  # eval_every=3
    assert "val/miou" not in rows[3]
    assert {"test/miou", "loss/seg"} <= set(rows[-1])
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 6
    assert ckpt["config"]["train"]["steps"] == 6


def test_resume_is_bit_identical(tiny_config: RunConfig, tmp_path: Path) -> None:
    # augmentation on, Dropout2d in the net: data positions and RNG states must both be restored
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    train(_with(tiny_config, out_dir=str(full_dir)), method_cls=TinyMethod)
    stopped = train(_with(tiny_config, out_dir=str(cut_dir)), method_cls=TinyMethod, stop_after=3)
    assert stopped["stopped_at"] == 3
    assert load_checkpoint(cut_dir)["step"] == 3
    assert not (cut_dir / "results.json").exists()
    train(_with(tiny_config, out_dir=None, resume=str(cut_dir)), method_cls=TinyMethod)
    a, b = _weights(full_dir), _weights(cut_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the resumed log continues the interrupted one: same steps, same losses
    rows_a = read_metrics_csv(full_dir / "metrics.csv")
    rows_b = read_metrics_csv(cut_dir / "metrics.csv")
    assert [r["loss/seg"] for r in rows_a] == [r["loss/seg"] for r in rows_b]


def test_nan_stops_naming_the_term_and_keeps_last_checkpoint(tiny_config: RunConfig) -> None:
    cfg = dataclasses.replace(tiny_config, params={"nan_at": 4})
    with pytest.raises(NonFiniteLossError, match=r"loss/seg.*step 3\) is kept"):
        train(cfg, method_cls=TinyMethod)
    out = Path(cfg.train.out_dir)
    assert load_checkpoint(out)["step"] == 3
    assert not (out / "results.json").exists()


def test_non_finite_returned_value_is_detected(tiny_config: RunConfig) -> None:
    with pytest.raises(NonFiniteLossError, match=r"'loss/aux' is inf.*no checkpoint"):
        train(_with(tiny_config, checkpoint_every=0), method_cls=TinyReturnsNaN)


def test_uda_streams_and_target_domain_evaluation(tiny_config: RunConfig) -> None:
    cfg = _with(tiny_config, steps=2, eval_every=0)
    results = train(cfg, method_cls=TinyUDAMethod)
    assert results["eval_domain"] == "real"
    assert results["regime"] == "uda"


def test_bf16_mixed_on_cpu_runs_with_finite_loss(tiny_config: RunConfig) -> None:
    cfg = _with(tiny_config, steps=2, eval_every=0, precision="bf16-mixed")
    results = train(cfg, method_cls=TinyMethod)
    rows = read_metrics_csv(Path(cfg.train.out_dir) / "metrics.csv")
    assert all(torch.isfinite(torch.tensor(r["loss/seg"])) for r in rows)
    assert results["precision"] == "bf16-mixed"


@pytest.mark.parametrize(
    ("regime", "keys", "labelled"),
    [
        ("full", None, True),
        ("scribble", None, False),
        ("semi", {"labeled", "unlabeled", "gt"}, {"labeled": True, "unlabeled": False, "gt": True}),
        ("uda", {"source", "target"}, {"source": True, "target": False}),
    ],
)
def test_stream_layout_per_regime(
    tiny_config: RunConfig, regime: str, keys: set | None, labelled: object
) -> None:
    from denseloss.training.streams import build_train_data

    data = build_train_data(tiny_config.data, regime)
    batch = next(data.stream)
    if keys is None:
        assert ("label" in batch) is labelled
        assert "scribble" in batch
    else:
        assert set(batch) == keys
        for name, has_label in labelled.items():  # type: ignore[union-attr]
            assert ("label" in batch[name]) is has_label, name
            assert batch[name]["image"].shape == (4, 3, 32, 32)
    assert data.eval_domain == ("real" if regime == "uda" else "synthetic")
    assert set(data.stream.state_dict())  # positions are checkpointable
