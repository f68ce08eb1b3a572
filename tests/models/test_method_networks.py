"""Structure of the method networks: discriminators, structure analyzer, heads, backbones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from denseloss.models import (
    ASPPSumClassifier,
    FCDiscriminator,
    FeatureConsistencyHead,
    MobileNetV2Encoder,
    PatchDiscriminator,
    ProjectionHead,
    ResNetEncoder,
    StructureAnalyzer,
    ViTEncoder,
    build_segmenter,
    upsample_to,
)

# ------------------------------------------------------------------------------- discriminators


def test_fc_discriminator_matches_advsemiseg_layout():
    d = FCDiscriminator(21)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (21, 64), (64, 128), (128, 256), (256, 512), (512, 1)
    ]  # fmt: skip
    for c in convs:
        assert c.kernel_size == (4, 4)
        assert c.stride == (2, 2)
        assert c.padding == (1, 1)
        assert c.bias is not None
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in d.modules())
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    relus = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert relus
    assert all(m.negative_slope == 0.2 for m in relus)


def test_fc_discriminator_equals_functional_reference():
    torch.manual_seed(0)
    d = FCDiscriminator(4, ndf=8, upsample=True)
    x = torch.rand(2, 4, 64, 96)
    y = x
    convs = [d.conv1, d.conv2, d.conv3, d.conv4]
    for c in convs:
        y = F.leaky_relu(F.conv2d(y, c.weight, c.bias, 2, 1), 0.2)
    y = F.conv2d(y, d.classifier.weight, d.classifier.bias, 2, 1)
    assert y.shape == (2, 1, 2, 3)
    y = F.interpolate(y, size=(64, 96), mode="bilinear", align_corners=True)
    with torch.no_grad():
        out = d(x)
    torch.testing.assert_close(out, y.detach())
    assert float(out.min()) < 0 < float(out.max())  # no sigmoid: logits take both signs


def test_fc_discriminator_rejects_small_inputs():
    d = FCDiscriminator(3, ndf=8)
    assert d(torch.rand(1, 3, 32, 40)).shape == (1, 1, 1, 1)
    with pytest.raises(
        ValueError, match=r"at least 32; got 31×40\. Hint: pad or upsample to 32×40"
    ):
        d(torch.rand(1, 3, 31, 40))
    with pytest.raises(ValueError, match="in_channels=3"):
        d(torch.rand(1, 4, 32, 32))


def test_patch_discriminator_has_no_running_buffers_and_checks_size():
    d = PatchDiscriminator(8, ndf=8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert len(list(d.buffers())) == 0
    assert d(torch.rand(1, 8, 24, 24)).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="at least 24"):
        d(torch.rand(1, 8, 23, 64))
    plain = PatchDiscriminator(8, ndf=8, norm="none")
    assert not any(isinstance(m, nn.GroupNorm) for m in plain.modules())


# ---------------------------------------------------------------------------- structure analyzer


def test_analyzer_layout_no_bn_stride_two():
    sa = StructureAnalyzer(13)
    convs = [sa.stem[0], *sa.encoder]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128, 128]
    assert all(c.stride == (2, 2) and c.kernel_size == (3, 3) for c in convs)
    assert all(c.stride == (1, 1) and c.kernel_size == (3, 3) for c in sa.decoder)
    assert sa.head.kernel_size == (1, 1)
    assert sa.head.out_channels == 13
    assert not any(isinstance(m, nn.BatchNorm2d) for m in sa.modules())


def test_analyzer_features_are_pre_activation():
    torch.manual_seed(0)
    sa = StructureAnalyzer(3, widths=(8, 16, 16))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        first = sa(x).features[0]
        torch.testing.assert_close(first, sa.stem[0](x))
    assert float(first.min()) < 0  # not ReLU'd


def test_analyzer_masks_invalid_regions():
    torch.manual_seed(0)
    sa = StructureAnalyzer(3, widths=(8, 16, 16, 16))
    x = torch.rand(2, 3, 64, 64)
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    valid[:, :, :20] = False  # left 20 columns invalid
    out = sa(x, valid)
    # by hand, layer 0: output column j sees input columns 2j-1..2j+1, so j = 0..10 touch < 20
    zero_cols = (out.features[0] == 0).all(dim=(0, 1, 2))
    assert zero_cols.tolist() == [True] * 11 + [False] * 21
    # layer l (stride 2^(l+1)) sees input columns up to 2^(l+1)·j + (2^(l+1) - 1) + ...; the
    # chained 3×3/stride-2 max-pool marks column j invalid iff its window reached column < 20.
    for feat in out.features[:4]:
        w = feat.shape[-1]
        ignore = (~valid).float().unsqueeze(1)
        for _ in range(round(64 / w).bit_length() - 1):
            ignore = F.max_pool2d(ignore, 3, 2, 1)
        invalid = ignore[:, 0] > 0
        assert bool(invalid.any())
        assert bool((~invalid).any())
        assert bool((feat.permute(1, 0, 2, 3)[:, invalid] == 0).all())
        assert bool((feat.permute(1, 0, 2, 3)[:, ~invalid] != 0).any())
    # encoder features at valid positions do not depend on the invalid input pixels
    x2 = x.clone()
    x2[:, :, :, :20] = torch.rand(2, 3, 64, 20) * 10
    out2 = sa(x2, valid)
    for a, b in zip(out.features[:4], out2.features[:4]):
        torch.testing.assert_close(a, b)
    # without a mask nothing is zeroed by masking
    assert not torch.equal(sa(x).features[0], out.features[0])


def test_analyzer_modalities_have_separate_stage_one_convs():
    torch.manual_seed(0)
    sa = StructureAnalyzer(5, widths=(8, 16), modality_channels=(4, 1))
    assert [c.in_channels for c in sa.stem] == [4, 1]
    assert [c.out_channels for c in sa.stem] == [4, 4]
    x = torch.rand(1, 5, 32, 32)
    x2 = x.clone()
    x2[:, 4] = torch.rand(32, 32)  # change the second modality only
    f1, f2 = sa(x).features[0], sa(x2).features[0]
    torch.testing.assert_close(f1[:, :4], f2[:, :4])
    assert not torch.allclose(f1[:, 4:], f2[:, 4:])
    with pytest.raises(ValueError, match="must sum to in_channels=5"):
        StructureAnalyzer(5, modality_channels=(4, 2))


def test_analyzer_mask_errors():
    sa = StructureAnalyzer(3, widths=(8, 8))
    with pytest.raises(TypeError, match="valid_mask must be a bool tensor"):
        sa(torch.rand(1, 3, 16, 16), torch.ones(1, 16, 16))
    with pytest.raises(ValueError, match=r"valid_mask must have shape \(1, 16, 16\)"):
        sa(torch.rand(1, 3, 16, 16), torch.ones(1, 8, 16, dtype=torch.bool))


# ----------------------------------------------------------------------------------------- heads


def test_projection_and_consistency_heads():
    proj = ProjectionHead(32)
    convs = [m for m in proj.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (32, 32, (1, 1)), (32, 256, (1, 1))
    ]  # fmt: skip
    assert any(isinstance(m, nn.BatchNorm2d) for m in proj.modules())
    z = proj(torch.rand(2, 32, 4, 4))
    assert z.shape == (2, 256, 4, 4)
    assert not torch.allclose(z.norm(dim=1), torch.ones(2, 4, 4))  # not L2-normalised
    assert ProjectionHead(32, hidden=16, out_channels=8)(torch.rand(2, 32, 4, 4)).shape[1] == 8
    assert FeatureConsistencyHead(96)(torch.rand(2, 96, 8, 8)).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match="out_channels must be > 0"):
        FeatureConsistencyHead(96, out_channels=0)


def test_upsample_to_is_bilinear_align_corners_false():
    x = torch.rand(2, 3, 4, 5)
    ref = F.interpolate(x, size=(8, 15), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_to(x, (8, 15)), ref)
    assert not torch.allclose(
        upsample_to(x, (8, 15)), F.interpolate(x, (8, 15), mode="bilinear", align_corners=True)
    )
    assert upsample_to(x, torch.Size([1, 1, 8, 15])).shape == (2, 3, 8, 15)


def test_aspp_sum_classifier_is_sum_of_dilated_convs():
    torch.manual_seed(0)
    head = ASPPSumClassifier(6, 3, rates=(6, 12, 18, 24))
    x = torch.rand(1, 6, 9, 9)
    ref = sum(F.conv2d(x, c.weight, c.bias, 1, r, r) for c, r in zip(head.convs, (6, 12, 18, 24)))
    torch.testing.assert_close(head(x), ref)


# ------------------------------------------------------------------------------------- backbones


def test_resnet_dilation_as_deeplab_v2():
    enc = ResNetEncoder(output_stride=8)
    assert enc.layer3[0].conv1.dilation == (2, 2)
    assert enc.layer3[0].conv1.stride == (1, 1)
    assert enc.layer4[0].conv1.dilation == (4, 4)
    assert enc.layer4[0].conv1.stride == (1, 1)
    enc32 = ResNetEncoder(output_stride=32, blocks=(1, 2, 1, 1))
    assert [f.shape[-1] for f in enc32(torch.rand(1, 3, 64, 64))] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="output_stride must be one of"):
        ResNetEncoder(output_stride=4)


def test_mobilenet_output_strides():
    # shapes on the meta device: no kernels run, so this costs nothing
    x = torch.empty(2, 3, 64, 96, device="meta")
    for os_ in (8, 16, 32):
        enc = MobileNetV2Encoder(width_mult=0.5, output_stride=os_).to("meta")
        assert [tuple(f.shape) for f in enc(x)] == [(2, 16, 16, 24), (2, 160, 64 // os_, 96 // os_)]
        dilations = [m.dilation[0] for m in enc.modules() if isinstance(m, nn.Conv2d)]
        assert max(dilations) == {8: 4, 16: 2, 32: 1}[os_]
    model = build_segmenter("mobilenetv2", num_classes=3, width_mult=0.5, output_stride=8)
    assert model.output_stride == 8
    assert model.input_multiple == 8
    with pytest.raises(ValueError, match="output_stride must be one of"):
        MobileNetV2Encoder(output_stride=4)


def test_vit_position_embedding_is_interpolated():
    torch.manual_seed(0)
    enc = ViTEncoder(dim=24, depth=1, heads=2, img_size=64)
    assert enc.pos_embed.shape == (1, 24, 8, 8)
    x = torch.rand(1, 3, 96, 64)
    # the interpolated embedding is used: changing pos_embed changes the output at any size
    before = enc(x)[0]
    with torch.no_grad():
        enc.pos_embed.add_(1.0)
    assert not torch.allclose(before, enc(x)[0])
    with pytest.raises(ValueError, match="divisible by heads"):
        ViTEncoder(dim=25, heads=2)


def test_fc_discriminator_stride_one_tail_keeps_the_map_spatial():
    from denseloss.models import FCDiscriminator

    x = torch.rand(2, 4, 64, 64)
    assert FCDiscriminator(4, ndf=4)(x).shape[-2:] == (2, 2)
    d = FCDiscriminator(4, ndf=4, strides=(2, 2, 2, 1, 1))
    assert d(x).shape[-2:] == (6, 6)  # 64 → 32 → 16 → 8 → 7 → 6
    assert FCDiscriminator(4, ndf=4, strides=(2, 2, 2, 1, 1), upsample=True)(x).shape[-2:] == (
        64,
        64,
    )
    with pytest.raises(ValueError, match="strides"):
        FCDiscriminator(4, strides=(2, 2, 2))
