"""ViT-S/16 and ViT-B/16 with timm's names; position-embedding resampling; the ViT segmenters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from denseloss.models import VisionTransformer, build_segmenter
from denseloss.models.vit import resample_pos_embed


def timm_keys(dim: int, depth: int, grid: int) -> dict[str, tuple[int, ...]]:
    """timm's vit_*_patch16_224 state_dict (names → shapes), written out from its definition."""
    keys = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, 1 + grid * grid, dim),
        "patch_embed.proj.weight": (dim, 3, 16, 16),
        "patch_embed.proj.bias": (dim,),
    }
    for i in range(depth):
        b = f"blocks.{i}"
        keys |= {
            f"{b}.norm1.weight": (dim,), f"{b}.norm1.bias": (dim,),
            f"{b}.attn.qkv.weight": (3 * dim, dim), f"{b}.attn.qkv.bias": (3 * dim,),
            f"{b}.attn.proj.weight": (dim, dim), f"{b}.attn.proj.bias": (dim,),
            f"{b}.norm2.weight": (dim,), f"{b}.norm2.bias": (dim,),
            f"{b}.mlp.fc1.weight": (4 * dim, dim), f"{b}.mlp.fc1.bias": (4 * dim,),
            f"{b}.mlp.fc2.weight": (dim, 4 * dim), f"{b}.mlp.fc2.bias": (dim,),
        }  # fmt: skip
    keys |= {
        "norm.weight": (dim,),
        "norm.bias": (dim,),
        "head.weight": (1000, dim),
        "head.bias": (1000,),
    }
    return keys


@pytest.mark.parametrize(("dim", "heads", "params"), [(768, 12, 86_567_656), (384, 6, 22_050_664)])
def test_published_parameter_counts_and_timm_names(dim, heads, params):
    with torch.device("meta"):
        vit = VisionTransformer(embed_dim=dim, num_heads=heads, num_classes=1000)
    assert sum(p.numel() for p in vit.parameters()) == params
    assert {k: tuple(v.shape) for k, v in vit.state_dict().items()} == timm_keys(dim, 12, 14)
    assert vit.out_indices == (2, 5, 8, 11)


def test_attention_block_equals_torch_multihead_attention():
    # timm's qkv rows are [q; k; v], the layout of nn.MultiheadAttention's in_proj
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, embed_dim=16, depth=1, num_heads=4)
    attn = vit.blocks[0].attn
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(attn(x), mha(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-6)


def test_multi_level_features_are_the_normed_tokens_of_the_chosen_blocks():
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=32, embed_dim=16, depth=4, num_heads=2, out_indices=(1, 3)
    ).eval()
    x = torch.randn(1, 3, 48, 32)
    feats = vit(x)
    assert [tuple(f.shape) for f in feats] == [(1, 16, 3, 2), (1, 16, 3, 2)]
    # by hand: patches + class token + resampled position embedding → blocks → norm
    t = vit.patch_embed(x).flatten(2).transpose(1, 2)
    t = torch.cat([vit.cls_token, t], 1) + resample_pos_embed(vit.pos_embed, (3, 2))
    t = vit.blocks[1](vit.blocks[0](t))
    torch.testing.assert_close(feats[0], vit.norm(t)[:, 1:].transpose(1, 2).reshape(1, 16, 3, 2))


def test_pos_embed_resampling_keeps_class_token_and_identity():
    pos = torch.randn(1, 1 + 9, 8)
    assert resample_pos_embed(pos, (3, 3)) is pos
    up = resample_pos_embed(pos, (5, 4))
    assert up.shape == (1, 21, 8)
    torch.testing.assert_close(up[:, 0], pos[:, 0])
    with pytest.raises(ValueError, match="square grid"):
        resample_pos_embed(torch.randn(1, 1 + 8, 8), (3, 3))


def test_plain_load_state_dict_of_another_grid_resamples():
    small = VisionTransformer(img_size=32, embed_dim=16, depth=1, num_heads=2)
    big = VisionTransformer(img_size=64, embed_dim=16, depth=1, num_heads=2)
    big.load_state_dict(small.state_dict(), strict=True)
    torch.testing.assert_close(big.pos_embed, resample_pos_embed(small.pos_embed, (4, 4)))


def test_classify_and_errors():
    vit = VisionTransformer(img_size=32, embed_dim=16, depth=2, num_heads=2, num_classes=7)
    assert vit.classify(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="num_classes must be > 0"):
        VisionTransformer(img_size=32, embed_dim=16, depth=2, num_heads=2).classify(
            torch.rand(1, 3, 32, 32)
        )
    with pytest.raises(ValueError, match="divisible by num_heads"):
        VisionTransformer(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="out_indices"):
        VisionTransformer(depth=4, out_indices=(4,))


def test_vit_segmenters_true_size_on_meta_and_tiny_forward():
    with torch.device("meta"):
        b16 = build_segmenter("vit_b16", num_classes=19)
        s16 = build_segmenter("vit_s16", num_classes=19)
    for net, dim in ((b16, 768), (s16, 384)):
        enc = {
            k.removeprefix("encoder."): tuple(v.shape)
            for k, v in net.state_dict().items()
            if k.startswith("encoder.")
        }
        tk = {k: v for k, v in timm_keys(dim, 12, 14).items() if not k.startswith("head.")}
        assert enc == tk
        assert net.decoder.fuse[0].weight.shape == (256, 4 * dim, 1, 1)
        assert net.output_stride == 16
    net = build_segmenter(
        "vit_b16", num_classes=3, embed_dim=32, depth=4, num_heads=2, decoder_channels=8
    )
    out = net(torch.rand(2, 3, 320, 320))
    assert out.logits.shape == (2, 3, 20, 20)
    assert out.features.shape == (2, 8, 20, 20)
    with pytest.raises(ValueError, match=r"multiples of 16; got 321×321\. Hint: pad to 336×336"):
        net(torch.rand(1, 3, 321, 321))
