"""Done-when of issue 10: the papers' networks build, load ``--model.weights`` and train.

``denseloss train --method advsemi --model.name deeplabv2_resnet101 --model.weights resnet101.pth``
and the same for ``maxsquare_iw_multi`` (``deeplabv2_resnet101_multi``), ``pne``
(``deeplabv3plus_resnet101``) and ``dfr`` (``vit_b16``), on the built-in data at a reduced crop.
The weights files are torchvision / timm-named encoder state dicts (with their ImageNet
classifier) generated from the network itself; depth and width are reduced through
``--model.kwargs`` so the four runs take seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from denseloss.cli.app import run
from denseloss.models import build_segmenter

TINY_RESNET = {"layers": [1, 1, 1, 1], "width": 8}
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_channels": 16, "img_size": 64}
RUNS = [
    ("advsemi", "deeplabv2_resnet101", TINY_RESNET, {"ndf": 8, "semi_start": 1}, "pth"),
    ("maxsquare_iw_multi", "deeplabv2_resnet101_multi", TINY_RESNET, {}, "pth"),
    ("pne", "deeplabv3plus_resnet101", TINY_RESNET, {"embedding_dim": 16}, "pth"),
    ("dfr", "vit_b16", TINY_VIT, {"head_channels": 8, "warmup_fraction": 0.1}, "safetensors"),
]


def imagenet_encoder_file(tmp_path, name: str, kwargs: dict, ext: str) -> tuple[str, dict]:
    """An ImageNet-style encoder file: the encoder's keys without prefix + a 1000-class head."""
    net = build_segmenter(name, num_classes=6, **kwargs)
    g = torch.Generator().manual_seed(7)
    state = {
        k.removeprefix("encoder."): torch.rand(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in net.state_dict().items()
        if k.startswith("encoder.")
    }
    width = net.encoder.out_channels[-1]
    head = "fc" if ext == "pth" else "head"  # torchvision ResNet / timm ViT classifier
    state[f"{head}.weight"], state[f"{head}.bias"] = torch.zeros(1000, width), torch.zeros(1000)
    path = tmp_path / f"{name}.{ext}"
    if ext == "pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    return str(path), state


def train_argv(method, name, kwargs, params, weights, out_dir) -> list[str]:
    size = "64" if name.startswith("vit") else "32"
    return [
        "train", "--method", method,
        "--model.name", name, "--model.kwargs", json.dumps(kwargs), "--model.weights", weights,
        "--params", json.dumps(params),
        "--data.size", size, "--data.train_length", "8", "--data.val_length", "2",
        "--data.test_length", "2", "--data.batch_size", "2", "--data.labeled_fraction", "0.5",
        "--train.steps", "2", "--train.eval_every", "0", "--train.eval_batches", "1",
        "--train.checkpoint_every", "0", "--train.progress", "false",
        "--train.out_dir", str(out_dir),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "name", "kwargs", "params", "ext"), RUNS, ids=[r[0] for r in RUNS]
)
def test_train_paper_network_with_imagenet_weights(
    tmp_path, caplog, capsys, method, name, kwargs, params, ext
):
    weights, state = imagenet_encoder_file(tmp_path, name, kwargs, ext)
    with caplog.at_level(logging.INFO, logger="denseloss.models.weights"):
        assert run(train_argv(method, name, kwargs, params, weights, tmp_path / "run")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2
    assert 0.0 <= summary["test"]["miou"] <= 1.0
    # the encoder was loaded from the file (minus its ImageNet classifier), and the log says so
    n_bn = sum(k.endswith("num_batches_tracked") for k in state)
    assert f"loaded {len(state) - 2} tensors" in caplog.text, (n_bn, caplog.text)
    assert "the encoder only" in caplog.text
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["config"]["model"]["weights"] == weights


def test_unsuitable_segmenter_names_the_missing_capability(tmp_path, capsys):
    argv = train_argv("maxsquare_iw_multi", "deeplabv2_resnet101", TINY_RESNET, {}, "x", tmp_path)
    argv = [a for a in argv if a not in ("--model.weights", "x")]
    assert run(argv) != 0
    err = capsys.readouterr().err
    assert "maxsquare_iw_multi: the segmenter must provide aux_logits" in err
    assert "deeplabv2_resnet101_multi" in err  # the hint lists networks that have one


def test_weights_for_another_network_fail_before_training(tmp_path, capsys):
    weights, _ = imagenet_encoder_file(tmp_path, "vit_b16", TINY_VIT, "safetensors")
    argv = train_argv(
        "pne",
        "deeplabv3plus_resnet101",
        TINY_RESNET,
        {"embedding_dim": 16},
        weights,
        tmp_path / "r",
    )
    assert run(argv) != 0
    err = capsys.readouterr().err
    assert "vit_b16.safetensors must fit deeplabv3plus_resnet101" in err


def test_eval_of_a_trained_run_does_not_reread_moved_weights(tmp_path, capsys):
    from denseloss.training.evaluation import evaluate_run

    method, name, kwargs, params, ext = RUNS[0]
    weights, _ = imagenet_encoder_file(tmp_path, name, kwargs, ext)
    assert run(train_argv(method, name, kwargs, params, weights, tmp_path / "run")) == 0
    capsys.readouterr()
    Path(weights).unlink()  # the ImageNet file moved after training: the checkpoint suffices
    result = evaluate_run(tmp_path / "run", split="val", max_batches=1)
    assert 0.0 <= result["metrics"]["miou"] <= 1.0
