"""Contract tests over every entry of SEGMENTERS, REGRESSORS, DISCRIMINATORS and ANALYZERS."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from denseloss.models import (
    ANALYZERS,
    DISCRIMINATORS,
    REGRESSORS,
    SEGMENTER_ALIASES,
    SEGMENTER_CAPABILITIES,
    SEGMENTERS,
    AnalyzerOutput,
    RegressorOutput,
    SegmenterOutput,
    build_analyzer,
    build_discriminator,
    build_regressor,
    build_segmenter,
)

NUM_CLASSES = 5
SIZES = [(64, 64), (96, 64)]

# Every factory with small settings, so the whole module runs in a few seconds (the papers'
# networks with reduced depth and width: their true sizes are checked on the meta device in
# test_resnet.py / test_vit.py).
TINY_RESNET = {"layers": (1, 1, 1, 1), "width": 8}
TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_channels": 16}
SEGMENTER_KW: dict[str, dict] = {
    "deeplabv2_resnet101": TINY_RESNET,
    "deeplabv2_resnet101_multi": TINY_RESNET,
    "deeplabv3plus_resnet50": TINY_RESNET,
    "deeplabv3plus_resnet101": TINY_RESNET,
    "vit_s16": TINY_VIT,
    "vit_b16": TINY_VIT,
    "deeplabv2_mini": {},
    "deeplabv3_mini": {},
    "mobilenetv2": {"width_mult": 0.5},
    "vit_mini": {},
}
CANONICAL_SEGMENTERS = [n for n in SEGMENTERS if n not in SEGMENTER_ALIASES]
REGRESSOR_KW: dict[str, dict] = {
    "deeplabv2": {},
    "mobilenetv2": {"width_mult": 0.5},
    "unet": {"widths": (8, 16, 32)},
}


def test_every_factory_has_test_settings():
    assert set(SEGMENTER_KW) == set(CANONICAL_SEGMENTERS)
    assert set(REGRESSOR_KW) == set(REGRESSORS)


def make(kind: str, name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "seg":
        return build_segmenter(name, num_classes=NUM_CLASSES, **SEGMENTER_KW[name])
    if kind == "depth" or kind == "normals":
        return build_regressor(name, task=kind, **REGRESSOR_KW[name])
    if kind == "disc":
        return build_discriminator(name, NUM_CLASSES + 3, ndf=8)
    return build_analyzer(name, NUM_CLASSES, widths=(8, 16, 16))


def model_input(kind: str, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ch = {"disc": NUM_CLASSES + 3, "analyzer": NUM_CLASSES}.get(kind, 3)
    return torch.rand(2, ch, h, w, generator=g)


CASES = (
    [("seg", n) for n in CANONICAL_SEGMENTERS]
    + [(t, n) for t in ("depth", "normals") for n in REGRESSORS]
    + [("disc", n) for n in DISCRIMINATORS]
    + [("analyzer", n) for n in ANALYZERS]
)
IDS = [f"{k}-{n}" for k, n in CASES]


def tensors(out: object) -> list[torch.Tensor]:
    """All tensors of an output, flattened (lists of features included)."""
    if isinstance(out, torch.Tensor):
        return [out]
    res = []
    for item in out:  # NamedTuple
        if isinstance(item, torch.Tensor):
            res.append(item)
        elif isinstance(item, list):
            res.extend(item)
    return res


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_forward_shapes(kind, name, h, w):
    model = make(kind, name)
    out = model(model_input(kind, h, w))
    if kind == "seg":
        assert isinstance(out, SegmenterOutput)
        s = model.output_stride
        assert out.logits.shape == (2, NUM_CLASSES, h // s, w // s)
        assert out.features.shape == (2, model.feature_channels, h // s, w // s)
        assert model.capabilities == SEGMENTER_CAPABILITIES[name]
        if "aux_logits" in model.capabilities:
            assert out.aux_logits is not None
            # the aux classifier reads layer3: stride 8 (OS 8) or 16 (DeepLab-v3+ at OS 16)
            aux_stride = 16 if name.startswith("deeplabv3plus") else s
            assert out.aux_logits.shape == (2, NUM_CLASSES, h // aux_stride, w // aux_stride)
        else:
            assert out.aux_logits is None
    elif kind in ("depth", "normals"):
        assert isinstance(out, RegressorOutput)
        s = model.output_stride
        c = 1 if kind == "depth" else 3
        assert out.prediction.shape == (2, c, h // s, w // s)
        assert out.features.shape == (2, model.feature_channels, h // s, w // s)
        if kind == "depth":
            assert bool((out.prediction > 0).all())
        else:
            norms = out.prediction.norm(dim=1)
            torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)
    elif kind == "disc":
        assert isinstance(out, torch.Tensor)
        if name == "fc":
            assert out.shape == (2, 1, h // 32, w // 32)
        else:
            assert out.shape == (2, 1, h // 8 - 2, w // 8 - 2)
    else:
        assert isinstance(out, AnalyzerOutput)
        assert out.reconstruction.shape == (2, NUM_CLASSES, h, w)
        assert [tuple(f.shape[1:]) for f in out.features] == [
            (8, h // 2, w // 2),
            (16, h // 4, w // 4),
            (16, h // 8, w // 8),
            # decoder convs run at their input level (deepest first), output the skip's channels
            (16, h // 8, w // 8),
            (8, h // 4, w // 4),
        ]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_finite_backward_reaches_every_parameter(kind, name):
    # Every parameter must get a gradient: an unused one would break DDP
    # (find_unused_parameters=False) and means a head is not wired in.
    model = make(kind, name)
    x = model_input(kind, 64, 64).requires_grad_(True)
    out = model(x)
    loss = sum(t.float().square().mean() for t in tensors(out))
    loss.backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # frozen on purpose (frozen BN, the authors' unused branches)
            continue
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert any(bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_state_dict_round_trip(kind, name):
    model = make(kind, name, seed=0)
    fresh = make(kind, name, seed=1)
    model.train()
    model(model_input(kind, 64, 64, seed=3))  # move BN running statistics off their init
    model.eval()
    fresh.eval()
    x = model_input(kind, 64, 64)
    with torch.no_grad():
        ref = tensors(model(x))
        before = tensors(fresh(x))
        assert any(not torch.equal(a, b) for a, b in zip(ref, before))  # the test can fail
        fresh.load_state_dict(model.state_dict(), strict=True)
        after = tensors(fresh(x))
    assert len(ref) == len(after)
    for a, b in zip(ref, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_train_and_eval_return_the_same_type(kind, name):
    model = make(kind, name)
    x = model_input(kind, 64, 64)
    out_train = model.train()(x)
    with torch.no_grad():
        out_eval = model.eval()(x)
    assert type(out_train) is type(out_eval)
    if isinstance(out_train, tuple):
        assert [type(v) for v in out_train] == [type(v) for v in out_eval]
        assert [t.shape for t in tensors(out_train)] == [t.shape for t in tensors(out_eval)]


@pytest.mark.parametrize(
    ("kind", "name"), [c for c in CASES if c[0] != "disc" and c[0] != "analyzer"]
)
def test_attributes(kind, name):
    model = make(kind, name)
    for attr in ("encoder", "decoder", "head"):
        assert isinstance(getattr(model, attr), nn.Module)
    assert isinstance(model.feature_channels, int)
    assert isinstance(model.output_stride, int)
    # normalisation constants are buffers that move with .to() but are not checkpointed
    assert not any("normalize" in k for k in model.state_dict())
    model.to(torch.float64)
    assert model.normalize.mean.dtype == torch.float64


def _any_size(kind: str, name: str) -> bool:
    return kind == "seg" and name.startswith("deeplabv") and "_mini" not in name


@pytest.mark.parametrize(
    ("kind", "name"), [c for c in CASES if c[0] in ("seg", "depth") and not _any_size(*c)]
)
def test_wrong_input_size_names_the_size_that_works(kind, name):
    model = make(kind, name)
    m = model.input_multiple
    assert m > 1
    ph, pw = m * (-(-65 // m)), m * (-(-60 // m))  # next multiples of m
    with pytest.raises(ValueError, match=rf"multiples of {m}; got 65×60\. Hint: pad to {ph}×{pw}"):
        model(torch.rand(1, 3, 65, 60))


@pytest.mark.parametrize("name", [n for n in CANONICAL_SEGMENTERS if _any_size("seg", n)])
def test_resnet_segmenters_take_any_size(name):
    # torchvision convention: each stride-2 layer gives ceil(H / 2), so 65×60 → 9×8 at OS 8
    model = make("seg", name)
    assert model.input_multiple == 1
    out = model.eval()(torch.rand(1, 3, 65, 60))
    expected = {4: (17, 15), 8: (9, 8)}[model.output_stride]
    assert tuple(out.logits.shape[-2:]) == expected


def test_vit_size_error_names_patch_multiple():
    model = build_segmenter("vit", num_classes=3, dim=24, depth=1, heads=2)
    with pytest.raises(ValueError, match=r"multiples of 8; got 60×64\. Hint: pad to 64×64"):
        model(torch.rand(1, 3, 60, 64))


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda: build_segmenter("nope", num_classes=3), "deeplabv2"),
        (lambda: build_regressor("nope", task="depth"), "unet"),
        (lambda: build_discriminator("nope", 3), "patch"),
        (lambda: build_analyzer("nope", 3), "asm"),
    ],
)
def test_unknown_name_lists_valid_names(call, names):
    with pytest.raises(ValueError, match=rf"must be one of \[.*'{names}'.*\]; got 'nope'"):
        call()


def test_bad_task_and_channels():
    with pytest.raises(ValueError, match="task must be one of"):
        build_regressor("unet", task="height")
    with pytest.raises(ValueError, match="3 channels"):
        build_segmenter("deeplabv2", num_classes=3)(torch.rand(1, 1, 64, 64))
    with pytest.raises(TypeError, match="floating-point"):
        build_segmenter("deeplabv2", num_classes=3)(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
