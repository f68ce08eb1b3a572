"""``load_weights``: torchvision / timm encoder files, the authors' layouts, denseloss files."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch
from safetensors.torch import save_file

from denseloss.models import build_segmenter, load_weights, read_state_dict
from denseloss.models.weights import KEY_MAPPINGS, map_keys
from tests.models.authors_deeplab import ResNetMulti, authors_state_dict, imagenet_like

TINY = {"layers": (1, 1, 1, 1), "width": 8}
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_channels": 16}


def _changed(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``net``'s shapes with values no initialisation produces."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.rand(v.shape, generator=g) if v.is_floating_point() else v.clone()
        for k, v in net.state_dict().items()
    }


def test_torchvision_resnet_file_loads_the_encoder_and_says_so(tmp_path, caplog):
    net = build_segmenter("deeplabv2_resnet101", num_classes=5, **TINY)
    enc = {k.removeprefix("encoder."): v for k, v in _changed(net, 1).items() if "encoder." in k}
    enc["fc.weight"], enc["fc.bias"] = torch.zeros(1000, 256), torch.zeros(1000)  # ImageNet fc
    torch.save(enc, tmp_path / "resnet101.pth")
    head_before = net.head.convs[0].weight.clone()
    with caplog.at_level(logging.INFO, logger="denseloss.models.weights"):
        report = load_weights(net, tmp_path / "resnet101.pth")
    assert report.layout == "encoder"
    assert report.encoder_only
    assert set(report.dropped) == {"fc.weight", "fc.bias"}
    assert report.loaded == len(enc) - 2
    torch.testing.assert_close(
        net.encoder.layer1[0].downsample[0].weight, enc["layer1.0.downsample.0.weight"]
    )
    torch.testing.assert_close(net.encoder.bn1.running_var, enc["bn1.running_var"])
    assert torch.equal(net.head.convs[0].weight, head_before)
    assert "the encoder only" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_timm_vit_safetensors_with_another_grid_loads_and_resamples(tmp_path, caplog):
    net = build_segmenter("vit_b16", num_classes=5, img_size=64, **TINY_VIT)  # 4×4 grid
    src = build_segmenter("vit_b16", num_classes=5, img_size=32, **TINY_VIT)  # 2×2 grid
    enc = {k.removeprefix("encoder."): v for k, v in _changed(src, 2).items() if "encoder." in k}
    enc["head.weight"], enc["head.bias"] = torch.zeros(1000, 32), torch.zeros(1000)
    assert enc["pos_embed"].shape == (1, 1 + 4, 32)
    save_file(enc, str(tmp_path / "vit.safetensors"))
    with caplog.at_level(logging.INFO, logger="denseloss.models.weights"):
        report = load_weights(net, tmp_path / "vit.safetensors")
    assert report.encoder_only
    assert net.encoder.pos_embed.shape == (1, 1 + 16, 32)
    torch.testing.assert_close(net.encoder.pos_embed[:, 0], enc["pos_embed"][:, 0])  # class token
    # a constant grid stays constant under bicubic resampling
    const = dict(
        enc, pos_embed=torch.cat([enc["pos_embed"][:, :1], torch.full((1, 4, 32), 0.5)], 1)
    )
    save_file(const, str(tmp_path / "const.safetensors"))
    load_weights(net, tmp_path / "const.safetensors")
    torch.testing.assert_close(net.encoder.pos_embed[0, 1:], torch.full((16, 32), 0.5))
    torch.testing.assert_close(
        net.encoder.blocks[1].attn.qkv.weight, enc["blocks.1.attn.qkv.weight"]
    )
    assert "resampled (1, 5, 32) -> (1, 17, 32)" in caplog.text


def test_denseloss_checkpoint_and_full_state_dict_round_trip(tmp_path):
    src = build_segmenter("deeplabv3plus_resnet50", num_classes=4, **TINY)
    state = _changed(src, 3)
    ckpt = {"format": 1, "step": 7, "method": {"module/segmenter": state, "module/projection": {}}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    net = build_segmenter("deeplabv3plus_resnet50", num_classes=4, **TINY)
    report = load_weights(net, tmp_path / "last.ckpt")
    assert report.layout == "full"
    assert not report.encoder_only
    assert report.kept_init == ()
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "dp.pth")
    assert read_state_dict(tmp_path / "dp.pth").keys() == state.keys()


def test_mismatch_error_names_file_and_first_keys(tmp_path):
    net = build_segmenter("deeplabv2_resnet101", num_classes=5, **TINY)
    state = _changed(net, 4)
    del state["encoder.layer4.0.conv2.weight"]
    state["encoder.layer9.weight"] = torch.zeros(1)
    state["encoder.conv1.weight"] = torch.zeros(16, 3, 7, 7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth") as err:
        load_weights(net, tmp_path / "bad.pth")
    msg = str(err.value)
    assert "1 missing [encoder.layer4.0.conv2.weight]" in msg
    assert "1 unexpected [encoder.layer9.weight]" in msg
    assert "encoder.conv1.weight: file (16, 3, 7, 7) vs model (8, 3, 7, 7)" in msg
    # not strict: what fits is loaded
    report = load_weights(net, tmp_path / "bad.pth", strict=False)
    assert torch.equal(net.encoder.layer1[0].conv1.weight, state["encoder.layer1.0.conv1.weight"])
    assert "encoder.layer4.0.conv2.weight" in report.kept_init


def test_classifier_for_other_classes_keeps_its_init(tmp_path, caplog):
    src = build_segmenter("deeplabv2_resnet101", num_classes=21, **TINY)
    state = _changed(src, 5)
    torch.save(state, tmp_path / "voc.pth")
    net = build_segmenter("deeplabv2_resnet101", num_classes=19, **TINY)
    before = net.head.convs[2].weight.clone()
    report = load_weights(net, tmp_path / "voc.pth")
    assert torch.equal(net.head.convs[2].weight, before)
    assert torch.equal(net.encoder.layer3[0].conv3.weight, state["encoder.layer3.0.conv3.weight"])
    assert set(report.kept_init) == {
        f"head.convs.{i}.{p}" for i in range(4) for p in ("weight", "bias")
    }
    assert "another number of classes" in caplog.text


def test_weights_only_refuses_pickled_code_and_missing_files(tmp_path):
    path = tmp_path / "evil.pth"
    # an arbitrary class instance: unpickling it would import and run code
    torch.save({"w": torch.zeros(1), "args": argparse.Namespace(lr=0.1)}, path)
    net = build_segmenter("deeplabv2_resnet101", num_classes=5, **TINY)
    with pytest.raises(ValueError, match="weights-only PyTorch checkpoint"):
        load_weights(net, path)
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_weights(net, tmp_path / "absent.pth")


@pytest.mark.parametrize(
    ("multi", "name"), [(False, "deeplabv2_resnet101"), (True, "deeplabv2_resnet101_multi")]
)
@pytest.mark.parametrize("scale_prefix", [False, True])
def test_authors_checkpoints_reproduce_their_forward(tmp_path, multi, name, scale_prefix):
    torch.manual_seed(0)
    theirs = ResNetMulti((1, 2, 1, 1), 5, multi=multi, width=8).eval()
    for m in theirs.modules():  # BN statistics off their init, so a mapping slip shows up
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(
        authors_state_dict(theirs, scale_prefix=scale_prefix, old_format=True), tmp_path / "a.pth"
    )
    ours = build_segmenter(name, num_classes=5, layers=(1, 2, 1, 1), width=8, reference_code=True)
    report = load_weights(ours, tmp_path / "a.pth")
    assert report.layout == ("deeplab_multi" if multi else "res_deeplab")
    assert report.loaded == len([k for k in theirs.state_dict() if "num_batches" not in k])
    x = torch.rand(2, 3, 57, 71)  # odd sizes: exercises the ceil-mode pool
    with torch.no_grad():
        ref = theirs(imagenet_like(x))
        out = ours.eval()(x)
    main, aux = ref if multi else (ref, None)
    torch.testing.assert_close(out.logits, main, rtol=1e-4, atol=1e-5)
    if multi:
        torch.testing.assert_close(out.aux_logits, aux, rtol=1e-4, atol=1e-5)


def test_authors_init_into_multi_drops_its_layer5_as_maxsquare_does(tmp_path, caplog):
    single = ResNetMulti((1, 1, 1, 1), 21, multi=False, width=8)
    torch.save(
        authors_state_dict(single, scale_prefix=True, old_format=True), tmp_path / "init.pth"
    )
    ours = build_segmenter("deeplabv2_resnet101_multi", num_classes=19, **TINY)
    report = load_weights(ours, tmp_path / "init.pth")
    assert report.encoder_only
    assert len(report.dropped) == 8
    assert all(k.startswith("Scale.layer5.") for k in report.dropped)
    assert "reference_code=True" in caplog.text  # built without it: the warning says so


def test_mapping_covers_the_true_size_networks_exactly():
    # Their full-size networks, on the meta device: names and shapes of the released files.
    with torch.device("meta"):
        theirs = {m: ResNetMulti((3, 4, 23, 3), 19, multi=m) for m in (False, True)}
        ours = {
            False: build_segmenter("deeplabv2_resnet101", num_classes=19),
            True: build_segmenter("deeplabv2_resnet101_multi", num_classes=19),
        }
    for multi in (False, True):
        layout = "deeplab_multi" if multi else "res_deeplab"
        kind = "multi" if multi else "single"
        sd = authors_state_dict(theirs[multi], scale_prefix=True, old_format=True)
        mapped, dropped = map_keys(sd, KEY_MAPPINGS[(layout, kind)])
        own = {k: v for k, v in ours[multi].state_dict().items() if "num_batches" not in k}
        assert dropped == []
        assert mapped.keys() == own.keys()
        assert all(mapped[k].shape == own[k].shape for k in own)
        assert sd["Scale.layer5.conv2d_list.3.weight"].shape == (
            (19, 1024, 3, 3) if multi else (19, 2048, 3, 3)
        )
