"""ResNet-50/101 with torchvision's names; the DeepLab segmenters built on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from denseloss.models import ResNet, build_segmenter, resnet50, resnet101
from denseloss.models.resnet import RESNET_LAYERS


def torchvision_keys(layers: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """torchvision's ResNet state_dict (names → shapes), written out from its definition."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{p}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    in_ch = 64
    for i, n in enumerate(layers):
        planes = 64 * 2**i
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, in_ch, 1, 1)
            bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, in_ch, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            in_ch = planes * 4
    keys["fc.weight"], keys["fc.bias"] = (1000, 2048), (1000,)
    return keys


@pytest.mark.parametrize(
    ("factory", "layers", "params"),
    [
        (resnet50, RESNET_LAYERS["resnet50"], 25_557_032),
        (resnet101, RESNET_LAYERS["resnet101"], 44_549_160),
    ],
)
def test_published_parameter_counts_and_torchvision_names(factory, layers, params):
    with torch.device("meta"):
        net = factory(num_classes=1000)
    assert sum(p.numel() for p in net.parameters()) == params
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == torchvision_keys(layers)


@pytest.mark.parametrize(
    ("output_stride", "sizes"),
    [(8, (81, 41, 41, 41)), (16, (81, 41, 21, 21)), (32, (81, 41, 21, 11))],
)
def test_output_strides_on_321(output_stride, sizes):
    # 321 → conv1 161 → max-pool 81 → each stride-2 layer ceil(h / 2)
    net = ResNet(layers=(1, 1, 1, 1), width=4, output_stride=output_stride)
    feats = net(torch.rand(1, 3, 321, 321))
    assert [tuple(f.shape[-2:]) for f in feats] == [(s, s) for s in sizes]
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128]
    assert net.output_stride == output_stride


def test_dilation_follows_torchvision_and_the_authors_code():
    tv = ResNet(layers=(2, 2, 2, 2), width=4, output_stride=8)
    # torchvision: the first block of a dilated layer keeps the previous dilation; stride on conv2
    assert [tv.layer3[i].conv2.dilation for i in (0, 1)] == [(1, 1), (2, 2)]
    assert [tv.layer4[i].conv2.dilation for i in (0, 1)] == [(2, 2), (4, 4)]
    assert (tv.layer2[0].conv1.stride, tv.layer2[0].conv2.stride) == ((1, 1), (2, 2))
    assert not tv.maxpool.ceil_mode
    ref = ResNet(layers=(2, 2, 2, 2), width=4, output_stride=8, reference_code=True)
    assert [ref.layer3[i].conv2.dilation for i in (0, 1)] == [(2, 2), (2, 2)]
    assert (ref.layer2[0].conv1.stride, ref.layer2[0].conv2.stride) == ((2, 2), (1, 1))
    assert ref.maxpool.ceil_mode
    assert ref.state_dict().keys() == tv.state_dict().keys()


def _functional_resnet(sd: dict[str, torch.Tensor], x: torch.Tensor, layers, dil) -> list:
    """torchvision's ResNet forward written with F.conv2d / F.batch_norm from the state dict."""

    def bn(t, p):
        return F.batch_norm(
            t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"]
        )

    x = F.max_pool2d(
        F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1
    )
    feats, prev = [], 1
    for i, n in enumerate(layers):
        stride = 1 if i == 0 or dil[i] > 1 else 2
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            d = prev if b == 0 else dil[i]
            s = stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"]), p + ".bn1"))
            out = F.relu(
                bn(
                    F.conv2d(out, sd[p + ".conv2.weight"], stride=s, padding=d, dilation=d),
                    p + ".bn2",
                )
            )
            out = bn(F.conv2d(out, sd[p + ".conv3.weight"]), p + ".bn3")
            if b == 0:
                x = bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=s), p + ".downsample.1")
            x = F.relu(out + x)
        prev = dil[i]
        feats.append(x)
    return feats


def test_forward_equals_a_functional_torchvision_resnet():
    torch.manual_seed(0)
    net = ResNet(layers=(2, 1, 2, 1), width=4, output_stride=8).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 45, 38)
    with torch.no_grad():
        ours = net(x)
        ref = _functional_resnet(net.state_dict(), x, (2, 1, 2, 1), (1, 1, 2, 4))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_freeze_bn_keeps_statistics_and_affine_fixed():
    net = ResNet(layers=(1, 1, 1, 1), width=4, freeze_bn=True).train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    assert all(p.requires_grad for n, p in net.named_parameters() if "conv" in n)
    before = bns[0].running_mean.clone()
    net(torch.rand(2, 3, 32, 32) * 5)
    assert torch.equal(bns[0].running_mean, before)
    free = ResNet(layers=(1, 1, 1, 1), width=4).train()
    free(torch.rand(2, 3, 32, 32) * 5)
    assert not torch.equal(free.bn1.running_mean, torch.zeros(4))


def test_classify_needs_fc():
    net = ResNet(layers=(1, 1, 1, 1), width=4, num_classes=10)
    assert net.classify(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="num_classes must be set"):
        ResNet(layers=(1, 1, 1, 1), width=4).classify(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="output_stride must be one of"):
        ResNet(output_stride=4)


def test_true_size_deeplab_segmenters_on_meta():
    with torch.device("meta"):
        v2 = build_segmenter("deeplabv2_resnet101", num_classes=21)
        multi = build_segmenter("deeplabv2_resnet101_multi", num_classes=19)
        v3p = build_segmenter("deeplabv3plus_resnet101", num_classes=19)
    tv = {
        k: v
        for k, v in torchvision_keys(RESNET_LAYERS["resnet101"]).items()
        if not k.startswith("fc.")
    }
    for net in (v2, multi, v3p):
        enc = {
            k.removeprefix("encoder."): tuple(v.shape)
            for k, v in net.state_dict().items()
            if k.startswith("encoder.")
        }
        assert enc == tv
    assert [c.dilation for c in v2.head.convs] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert v2.head.convs[0].weight.shape == (21, 2048, 3, 3)
    assert multi.head["aux"].convs[0].weight.shape == (19, 1024, 3, 3)
    # DeepLab-v3+: ASPP 1×1 + three rates + pooling → 1280 → 256; decoder 256 + 48 → 256
    assert v3p.decoder.aspp.project[0].weight.shape == (256, 1280, 1, 1)
    assert [b[0].dilation for b in v3p.decoder.aspp.branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    assert v3p.decoder.low_level[0].weight.shape == (48, 256, 1, 1)
    assert v3p.decoder.fuse[0][0].weight.shape == (256, 304, 3, 3)
    assert v3p.head["aux"][0][0].weight.shape == (256, 1024, 3, 3)
    params = sum(p.numel() for p in v2.parameters())
    assert params == 44_549_160 - 2048 * 1000 - 1000 + 4 * (
        21 * 2048 * 9 + 21
    )  # ResNet-101 − fc + ASPP-sum


@pytest.mark.parametrize(
    ("name", "logits", "aux"),
    [
        ("deeplabv2_resnet101", 41, None),
        ("deeplabv2_resnet101_multi", 41, 41),
        ("deeplabv3plus_resnet50", 81, 21),
        ("deeplabv3plus_resnet101", 81, 21),
    ],
)
def test_segmenter_shapes_on_321(name, logits, aux):
    net = build_segmenter(name, num_classes=3, layers=(1, 1, 1, 1), width=4).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 321, 321))
    assert out.logits.shape == (1, 3, logits, logits)
    assert out.features.shape == (1, net.feature_channels, logits, logits)
    assert (None if out.aux_logits is None else out.aux_logits.shape[-1]) == aux


def test_reference_classifier_sums_two_branches_and_freezes_the_rest():
    net = build_segmenter(
        "deeplabv2_resnet101", num_classes=3, layers=(1, 1, 1, 1), width=4, reference_code=True
    )
    x = torch.rand(1, 3, 65, 65)
    out = net.eval()(x).logits
    with torch.no_grad():
        for conv in net.head.convs[2:]:
            conv.weight.add_(1.0)
    torch.testing.assert_close(net(x).logits, out)
    assert [c.weight.requires_grad for c in net.head.convs] == [True, True, False, False]
