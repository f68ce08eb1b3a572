"""Issue 9's method-level port fixes, each against a behaviour the previous code did not have.

1. AdvSemiSeg: unlabelled crop padding (``valid`` False) is out of L_semi_adv, L_semi and D's loss.
2. UDA: every recipe trains on the source with CE + aux_weight · aux CE (MaxSquare's ``--multi``
   source pretraining, ``--lambda_seg`` 0.1), so source-only training moves the aux head.
3. ``OptimConfig.schedule_steps``: a poly horizon longer than the run (stopped mid-schedule).
4. ASM: stage-1 width 16, depth reconstruction ReLU(rec) vs raw depth, and the segmentation
   analyzer mask that keeps the void band (the reference masks invalid depth/normals only).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning_fabric import Fabric
from torch import nn

from denseloss.losses import semi_supervised_loss
from denseloss.methods import METHODS, MethodContext, ModelConfig, OptimConfig

C, N, H, W = 3, 2, 32, 32
TINY = ModelConfig("deeplabv2", {"widths": (8, 8, 16, 16)})
PAD = 6  # bottom rows of crop padding in the batches below


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tiny nets only pay thread overhead (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(name: str, optim: OptimConfig | None = None, total_steps: int = 10, **params: Any):
    cls = METHODS[name]
    ctx = MethodContext(
        fabric=Fabric(accelerator="cpu", devices=1),
        num_classes=C,
        total_steps=total_steps,
        model=TINY,
        optim=optim if optim is not None else OptimConfig(lr=0.01),
    )
    return cls(cls.Config(**params), ctx)


def _stream(seed: int, void_band: bool = False) -> dict[str, torch.Tensor]:
    """Blocky labels; the bottom PAD rows are crop padding (image 0, ``valid`` False)."""
    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(N, H, W, dtype=torch.long)
    label[:, :, W // 2 :] = 1
    label[:, 8:20, 8:20] = 2
    if void_band:
        label[:, :, 14:18] = 255  # a void band between the regions (VOC's boundary label)
    valid = torch.ones(N, H, W, dtype=torch.bool)
    valid[:, -PAD:] = False
    image = torch.rand(N, 3, H, W, generator=g) * valid.unsqueeze(1)
    # Labels under the padding are *not* void here, so only ``valid`` can exclude them.
    return {"image": image, "label": label, "valid": valid}


class _PerPixelD(nn.Module):
    """A 1×1-conv discriminator: its map at a pixel depends on that pixel only, so a masked-out
    pixel must receive exactly zero gradient. Records its last input (with grad) for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(C, 1, 1)
        self.last_input: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad:  # the D step feeds detached maps: make them a leaf to inspect
            x = x.detach().requires_grad_(True)
        self.last_input = x
        return self.conv(x)


# ------------------------------------------------------------------------------- 1. AdvSemiSeg


def test_semi_supervised_loss_valid_mask_by_hand() -> None:
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 1] = 2.0  # pixel 2: -log softmax max = log(1 + e^-2) = 0.1269
    logits.requires_grad_(True)
    d = torch.full((1, 1, 1, 2), 5.0)  # both trusted
    valid = torch.tensor([[[True, False]]])
    both = semi_supervised_loss(logits, d)
    assert float(both.detach()) == pytest.approx((0.693147 + 0.126928) / 2, abs=1e-5)
    masked = semi_supervised_loss(logits, d, valid_mask=valid)
    assert float(masked.detach()) == pytest.approx(0.693147, abs=1e-5)
    (grad,) = torch.autograd.grad(masked, logits)
    assert bool((grad[..., 1] == 0).all())
    assert bool((grad[..., 0] != 0).any())


def test_advsemi_generator_ignores_padding() -> None:
    torch.manual_seed(0)
    method = _build("advsemi", semi_start=0, threshold=0.0, ndf=8)
    method.disc = _PerPixelD()
    logits: list[torch.Tensor] = []
    original = method._logits

    def spy(out: Any, size: tuple[int, ...]) -> torch.Tensor:
        z = original(out, size)
        z.retain_grad()
        logits.append(z)
        return z

    method._logits = spy
    labeled, unlabeled = _stream(0), _stream(1)
    batch = {
        "labeled": labeled,
        "gt": _stream(2),
        "unlabeled": {k: unlabeled[k] for k in ("image", "valid")},
    }
    terms, total, _, valids, trusted = method._generator_terms(batch, step=0)
    assert {"loss/adv", "loss/semi_adv", "loss/semi"} <= set(terms)
    assert trusted == 1.0  # T_semi = 0: every *valid* pixel is trusted
    total.backward()
    z_l, z_u = logits
    pad = ~unlabeled["valid"]
    # every unlabelled term (L_semi_adv through a per-pixel D, L_semi) skips the padding ...
    assert bool((z_u.grad.permute(1, 0, 2, 3)[:, pad] == 0).all())
    assert bool((z_u.grad.permute(1, 0, 2, 3)[:, ~pad] != 0).any())
    # ... and the labelled CE + L_adv skip the labelled padding even though its labels are not void
    assert bool((z_l.grad.permute(1, 0, 2, 3)[:, ~labeled["valid"]] == 0).all())
    assert torch.equal(valids[1], unlabeled["valid"])


def test_advsemi_discriminator_ignores_unlabelled_padding() -> None:
    torch.manual_seed(0)
    method = _build("advsemi", semi_start=0, threshold=0.0, ndf=8)
    d = _PerPixelD()
    method.disc = d
    unlabeled = _stream(1)
    batch = {
        "labeled": _stream(0),
        "gt": _stream(2),
        "unlabeled": {"image": unlabeled["image"], "valid": unlabeled["valid"]},
    }
    logs = method.training_step(batch, 0)
    assert logs["loss/d_fake"] > 0
    grad = d.last_input.grad  # D-step input: [fake_l; fake_u; real]
    assert grad is not None
    assert grad.shape[0] == 3 * N
    for rows in (slice(0, N), slice(N, 2 * N), slice(2 * N, 3 * N)):  # l, u, gt: all padded
        g = grad[rows].permute(1, 0, 2, 3)
        assert bool((g[:, ~unlabeled["valid"]] == 0).all())
        assert bool((g[:, unlabeled["valid"]] != 0).any())


# ------------------------------------------------------------------------------------- 2. UDA

UDA = sorted(name for name, cls in METHODS.items() if cls.regime == "uda")


def _aux_params(method) -> dict[str, torch.Tensor]:
    net = method.nets["segmenter"]
    return {k: p.detach().clone() for k, p in net.named_parameters() if ".aux." in k}


def test_source_only_trains_the_aux_head() -> None:
    no_wd = OptimConfig(lr=0.05, weight_decay=0.0)  # without decay, only a gradient moves it
    batch = {"source": _stream(0)}
    moved = {}
    for weight in (0.0, 0.1):
        torch.manual_seed(0)
        method = _build("source_only", optim=no_wd, aux_weight=weight)
        before = _aux_params(method)
        assert before, "the test network must have an aux head"
        logs = method.training_step(batch, 0)
        assert logs["loss/aux"] > 0
        after = _aux_params(method)
        moved[weight] = any(not torch.equal(before[k], after[k]) for k in before)
    assert moved == {0.0: False, 0.1: True}


def test_source_term_is_ce_plus_weighted_aux_ce() -> None:
    torch.manual_seed(0)
    method = _build("source_only", aux_weight=0.25)
    source = _stream(0)
    terms, total = method.source_loss(method.net(source["image"]), source["label"])
    expected = terms["loss/seg"] + 0.25 * terms["loss/aux"]
    torch.testing.assert_close(total, expected)


def test_uda_recipes_share_the_source_term() -> None:
    assert set(UDA) >= {"source_only", "minent", "maxsquare", "maxsquare_iw", "maxsquare_iw_multi"}
    defaults = {name: METHODS[name].Config().aux_weight for name in UDA}
    assert set(defaults.values()) == {0.1}, defaults  # reference --lambda_seg
    # With λ_T = 0 every recipe's update is its source term alone: after one step from the same
    # initialisation, every parameter must equal source_only's (the old code gave the aux head
    # a source gradient in maxsquare_iw_multi only).
    batch = {"source": _stream(0), "target": {k: _stream(1)[k] for k in ("image", "valid")}}
    params = {}
    for name in UDA:
        torch.manual_seed(0)
        extra = {} if name == "source_only" else {"lambda_target": 0.0}
        method = _build(name, **extra)
        method.training_step(batch, 0)
        params[name] = {k: p.detach() for k, p in method.nets["segmenter"].named_parameters()}
    ref = params["source_only"]
    for name in UDA:
        for k in ref:
            torch.testing.assert_close(
                params[name][k], ref[k], rtol=0, atol=1e-7, msg=f"{name} {k}"
            )


# -------------------------------------------------------------------------- 3. LR schedule horizon


def _lrs(method, steps: int) -> list[float]:
    method.optimizers["segmenter"].step()  # no gradients: a no-op that keeps torch's order check
    sched = method.schedulers["segmenter"]
    for _ in range(steps):
        sched.step()
    return sched.get_last_lr()


def test_schedule_steps_sets_the_poly_horizon() -> None:
    # MaxSquare's source pretraining: poly over iter_max 200k, stopped at iter_stop 80k.
    method = _build("source_only", OptimConfig(lr=0.01, schedule_steps=25), total_steps=10)
    first = method.schedulers["segmenter"].get_last_lr()
    assert first == pytest.approx([0.01, 0.1])  # encoder, head ×10
    last = _lrs(method, 10)
    factor = (1 - 10 / 25) ** 0.9  # 0.6^0.9 = 0.631
    assert last == pytest.approx([0.01 * factor, 0.1 * factor])
    # default: the horizon is the run, the LR reaches 0 at its end
    default = _build("source_only", OptimConfig(lr=0.01), total_steps=10)
    assert _lrs(default, 10) == pytest.approx([0.0, 0.0])


# ------------------------------------------------------------------------------------- 4. ASM


def test_asm_stage_one_is_sixteen_channels() -> None:
    method = _build("asm")  # the default analyzer widths
    analyzer = method.nets["analyzer"].module
    assert [c.out_channels for c in analyzer.stem] == [16]
    assert analyzer.encoder[0].in_channels == 16
    assert [c.out_channels for c in analyzer.encoder] == [64, 128, 128, 128]


def test_asm_depth_reconstruction_relu_on_raw_depth() -> None:
    method = _build("asm", analyzer_widths=(8, 8, 8))
    method.ctx.task = "depth"
    rec = torch.tensor([-1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    depth = torch.tensor([1.0, 2.0, 0.0]).view(1, 1, 1, 3)  # third pixel: no measurement
    valid = depth[:, 0] > 0
    # ReLU(rec) = (0, 2, ·): squared errors (1, 0) over the two measured pixels = 0.5. The old
    # MSE on log-depth gave ((-1 - 0)² + (2 - log 2)²) / 2 = 1.354.
    assert float(method._reconstruction_loss(rec, depth, valid)) == pytest.approx(0.5)


def test_asm_segmentation_keeps_the_void_band_in_the_analyzer() -> None:
    torch.manual_seed(0)
    method = _build("asm", analyzer_widths=(8, 8, 8))
    inner = method.analyzer.module
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = inner.forward

    def spy(x: torch.Tensor, valid_mask: torch.Tensor | None = None):
        if x.requires_grad:
            x.retain_grad()
        calls.append((x, valid_mask))
        return forward(x, valid_mask)

    inner.forward = spy
    batch = _stream(0, void_band=True)
    batch["label"][:, -PAD:] = 255  # padding carries the void label, as RandomCrop writes it
    method.training_step(batch, 0)
    (_, pair_mask), (soft, soft_mask), (gt, _) = calls
    void = (batch["label"] == 255) & batch["valid"]
    assert torch.equal(soft_mask, batch["valid"])  # padding masked, void band not
    assert torch.equal(pair_mask, torch.cat([batch["valid"], batch["valid"]]))
    assert bool((gt.permute(1, 0, 2, 3)[:, void] == 0).all())  # GT one-hot of 255: all zero
    probs = soft.detach().permute(1, 0, 2, 3)[:, void]
    torch.testing.assert_close(probs.sum(0), torch.ones(probs.shape[1]))  # prediction as it is
    # the match loss pulls the prediction inside the void band, never in the padding
    g = soft.grad.permute(1, 0, 2, 3)
    assert bool((g[:, void] != 0).any())
    assert bool((g[:, ~batch["valid"]] == 0).all())
