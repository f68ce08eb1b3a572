"""Contract tests for every entry of METHODS: three steps, detach/freeze patterns, round-trips."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from lightning_fabric import Fabric

from denseloss.losses import self_produced_guidance
from denseloss.methods import METHODS, MethodContext, ModelConfig, NonFiniteLossError, OptimConfig
from denseloss.methods._common import resize

C = 3  # classes of the synthetic batches
N, H, W = 2, 32, 32
TOTAL_STEPS = 10
TINY_MODEL = ModelConfig("deeplabv2", {"widths": (8, 8, 16, 16)})
TINY_VIT = {"dim": 16, "depth": 1, "heads": 2, "img_size": 32, "decoder_channels": 16}

# Small adversaries and warm-ups short enough that every term runs within three steps.
OVERRIDES: dict[str, dict[str, Any]] = {
    "cgan": {"d_kwargs": {"ndf": 8}},
    "asm": {"analyzer_widths": (8, 8, 8)},
    "pne": {"embedding_dim": 16},
    "pixel_contrast": {"warmup_steps": 1, "max_views": 2, "embedding_dim": 16},
    "adv": {"ndf": 8},
    "advsemi": {"ndf": 8, "semi_start": 1, "threshold": 0.0},
    "dfr": {"segmenter_kwargs": TINY_VIT, "head_channels": 8, "warmup_fraction": 0.1},
    "pce_densecrf": {"warmup_fraction": 0.1},
    "pce_gatedcrf": {"warmup_fraction": 0.1},
}

# Nets updated by an adversarial optimiser step: (adversary, main net).
ADVERSARIES = {
    "cgan": ("discriminator", None),
    "asm": ("analyzer", None),
    "adv": ("discriminator", "segmenter"),
    "advsemi": ("discriminator", "segmenter"),
}

CASES = [(name, task) for name, cls in METHODS.items() for task in cls.tasks]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tiny nets only pay thread overhead (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _labels(generator: torch.Generator) -> torch.Tensor:
    """Blocky labels: class 0 left, 1 right, 2 a square; some 255."""
    y = torch.zeros(N, H, W, dtype=torch.long)
    y[:, :, W // 2 :] = 1
    y[:, 8:24, 8:24] = 2
    noise = torch.rand(N, H, W, generator=generator) < 0.05
    return torch.where(noise, torch.full_like(y, 255), y)


def _dense_stream(generator: torch.Generator) -> dict[str, torch.Tensor]:
    label = _labels(generator)
    depth = 1.0 + torch.rand(N, 1, H, W, generator=generator) * 4
    depth[:, :, :2] = 0.0  # missing depth
    normal = torch.nn.functional.normalize(torch.randn(N, 3, H, W, generator=generator), dim=1)
    normal[:, :, :, :2] = 0.0  # missing normals
    valid = torch.ones(N, H, W, dtype=torch.bool)
    valid[:, -4:] = False  # crop padding
    image = torch.rand(N, 3, H, W, generator=generator)
    return {"image": image, "label": label, "depth": depth, "normal": normal, "valid": valid}


def make_batch(regime: str, seed: int = 0) -> dict[str, Any]:
    """A tiny synthetic batch with the nested structure of ``regime``."""
    g = torch.Generator().manual_seed(seed)
    if regime == "full":
        return _dense_stream(g)
    if regime == "semi":
        labeled, gt, unl = _dense_stream(g), _dense_stream(g), _dense_stream(g)
        return {"labeled": labeled, "gt": gt, "unlabeled": {"image": unl["image"]}}
    if regime == "uda":
        source, target = _dense_stream(g), _dense_stream(g)
        return {"source": source, "target": {"image": target["image"], "valid": target["valid"]}}
    stream = _dense_stream(g)
    scribble = torch.full_like(stream["label"], 255)
    scribble[:, 4:6, 2:14] = 0
    scribble[:, 4:6, 18:30] = 1
    scribble[:, 15:17, 10:22] = 2
    return {"image": stream["image"], "scribble": scribble, "valid": stream["valid"]}


def build(name: str, task: str = "seg", **overrides: Any):
    cls = METHODS[name]
    params = {**OVERRIDES.get(name, {}), **overrides}
    config = cls.Config(**params)
    fabric = Fabric(accelerator="cpu", devices=1)
    ctx = MethodContext(
        fabric=fabric,
        num_classes=C,
        total_steps=TOTAL_STEPS,
        model=TINY_MODEL,
        optim=OptimConfig(lr=0.01),
        task=task,
    )
    return cls(config, ctx)


def _snapshot(method) -> dict[str, dict[str, torch.Tensor]]:
    return {
        k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in method.nets.items()
    }


def _spy_grads(method) -> list[tuple[str, dict[str, bool]]]:
    """Record, at each ``step_optimizer(name)``, which nets hold a gradient."""
    calls: list[tuple[str, dict[str, bool]]] = []
    original = method.step_optimizer

    def spy(name: str) -> None:
        has = {
            k: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters())
            for k, m in method.nets.items()
        }
        # DDP contract: a net whose optimiser steps got a gradient for every parameter (None =
        # unused in the graph, which DDP without find_unused_parameters rejects).
        if has[name]:
            missing = [n for n, p in method.nets[name].named_parameters() if p.grad is None]
            assert not missing, f"{name}: parameters outside the graph: {missing[:4]}"
        calls.append((name, has))
        original(name)

    method.step_optimizer = spy
    return calls


@pytest.mark.parametrize(("name", "task"), CASES)
def test_three_steps_contract(name: str, task: str) -> None:
    torch.manual_seed(0)
    method = build(name, task)
    cls = METHODS[name]
    assert cls.name == name
    assert dataclasses.is_dataclass(cls.Config)
    before = _snapshot(method)
    calls = _spy_grads(method)
    batch = make_batch(cls.regime)
    keys = None
    for step in range(3):
        logs = method.training_step(batch, step)
        assert logs, "training_step must return logged terms"
        assert all(isinstance(v, float) for v in logs.values())
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), logs
        assert all(k.split("/")[0] in ("loss", "weight", "semi") for k in logs), logs
        assert keys is None or set(logs) == keys, "logged keys must not change between steps"
        keys = set(logs)
    assert any(k.startswith("loss/") for k in keys)

    after = _snapshot(method)
    for net, params in before.items():
        changed = any(not torch.equal(params[n], after[net][n]) for n in params)
        assert changed, f"{name}: parameters of {net!r} did not change"

    # Adversaries: the adversary's step sees no gradient in the main net (detached predictions)
    # and the main step sees none in the adversary (frozen during the generator step).
    if name in ADVERSARIES:
        adversary, _ = ADVERSARIES[name]
        main = "segmenter" if task == "seg" else "regressor"
        for opt_name, has in calls:
            if opt_name == adversary:
                assert not has[main], f"{name}: {adversary} step got gradient in {main}"
                assert has[adversary]
            elif opt_name == main:
                assert not has[adversary], f"{name}: {main} step got gradient in {adversary}"
                assert has[main]
        assert all(p.requires_grad for p in method.nets[adversary].parameters())

    # predict: dense output at the image size
    method.eval()
    image = batch["image"] if "image" in batch else next(iter(batch.values()))["image"]
    pred = method.predict(image)
    channels = {"seg": C, "depth": 1, "normals": 3}[task]
    assert pred.shape == (N, channels, H, W)
    if task == "normals":
        torch.testing.assert_close(pred.norm(dim=1), torch.ones(N, H, W), atol=1e-4, rtol=0)

    # state_dict round trip into a fresh instance → identical predictions
    fresh = build(name, task)
    fresh.load_state_dict(method.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh.predict(image), pred, atol=0, rtol=0)
    assert set(fresh.state_dict()) == set(method.state_dict())


def test_advsemi_terms_and_confidence_map() -> None:
    torch.manual_seed(0)
    method = build("advsemi", semi_start=2)
    batch = make_batch("semi")
    logs0 = method.training_step(batch, 0)
    assert logs0["loss/semi"] == 0.0  # before semi_start
    logs2 = method.training_step(batch, 2)
    assert logs2["loss/semi"] > 0.0
    assert logs2["semi/trusted"] == 1.0
    method.eval()
    conf = method.extra_maps(batch["labeled"]["image"])["confidence"]
    assert conf.shape == (N, 1, H, W)
    assert float(conf.min()) >= 0.0
    assert float(conf.max()) <= 1.0


def test_advsemi_discriminator_loss_does_not_reach_segmenter() -> None:
    """The D loss is built on detached predictions: backward leaves the segmenter untouched."""
    torch.manual_seed(0)
    method = build("advsemi")
    calls = _spy_grads(method)
    method.training_step(make_batch("semi"), 3)
    names = [c[0] for c in calls]
    assert names == ["segmenter", "discriminator"]
    assert calls[1][1] == {"segmenter": False, "discriminator": True}


def test_asm_analyzer_frozen_during_predictor_step() -> None:
    torch.manual_seed(0)
    method = build("asm")
    analyzer = method.nets["analyzer"]
    seen: list[bool] = []  # requires_grad of the analyzer at each of its forward passes
    analyzer.module.register_forward_pre_hook(
        lambda mod, args: seen.append(any(p.requires_grad for p in mod.parameters()))
    )
    calls = _spy_grads(method)
    before = _snapshot(method)["analyzer"]
    method.training_step(make_batch("full"), 0)
    # analyzer update first (trainable), then the predictor update with the analyzer frozen
    assert [c[0] for c in calls] == ["analyzer", "segmenter"]
    assert seen == [True, False, False]
    assert not calls[0][1]["segmenter"]  # analyzer loss uses the detached prediction
    assert not calls[1][1]["analyzer"]  # no gradient reaches the frozen analyzer
    after = _snapshot(method)["analyzer"]
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in analyzer.parameters())


def test_asm_adversarial_weight_decays() -> None:
    method = build("asm")
    first = method.training_step(make_batch("full"), 0)["weight/adv"]
    last = method.training_step(make_batch("full"), TOTAL_STEPS)["weight/adv"]
    assert first == pytest.approx(12e-3)
    assert last == pytest.approx(12e-4)


def test_maxsquare_iw_multi_pseudo_labels_equal_self_produced_guidance() -> None:
    torch.manual_seed(0)
    method = build("maxsquare_iw_multi", threshold=0.4)
    batch = make_batch("uda")
    net = method.nets["segmenter"]
    with torch.no_grad():  # train mode (BN batch statistics), as in the step
        out = net(batch["target"]["image"])
        main = resize(out.logits, (H, W), align_corners=True)
        aux = resize(out.aux_logits, (H, W), align_corners=True)
        expected = self_produced_guidance(main, aux, threshold=0.4)
    logs = method.training_step(batch, 0)
    assert {"loss/aux", "loss/aux_target"} <= set(logs)
    torch.testing.assert_close(method.last_pseudo_labels, expected, atol=0, rtol=0)
    assert bool((expected != 255).any())
    assert bool((expected == 255).any())


def test_pixel_contrast_weight_zero_before_warmup() -> None:
    torch.manual_seed(0)
    method = build("pixel_contrast", warmup_steps=2)
    assert method.weight(0) == 0.0
    assert method.weight(1) == 0.0
    assert method.weight(2) == pytest.approx(0.1)
    batch = make_batch("full")
    before = _snapshot(method)["projection"]
    logs = method.training_step(batch, 0)
    assert logs["loss/contrast"] == 0.0
    after = _snapshot(method)["projection"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # head untouched in warm-up
    logs = method.training_step(batch, 2)
    assert logs["loss/contrast"] > 0.0
    after2 = _snapshot(method)["projection"]
    assert any(not torch.equal(after[k], after2[k]) for k in after)


def test_scribble_regularizer_off_during_warmup() -> None:
    method = build("pce_gatedcrf", warmup_fraction=0.5)
    batch = make_batch("scribble")
    assert method.training_step(batch, 0)["loss/crf"] == 0.0
    assert method.training_step(batch, 5)["loss/crf"] > 0.0


def test_dfr_backbone_choice() -> None:
    cls = METHODS["dfr"]
    default = build("dfr")
    assert default.nets["segmenter"].module.name == "vit"
    ctx = dataclasses.replace(
        default.ctx, model=ModelConfig("deeplabv3", {"widths": (8, 8, 16, 16)})
    )
    assert cls.backbone_name(cls.Config(), ctx) == "deeplabv3"
    assert cls.backbone_name(cls.Config(segmenter="vit"), ctx) == "vit"


def test_dfr_kernel_weight_and_combination_order_the_regulariser() -> None:
    """Same weights, same batch: K_product = k_s k_d <= k_s <= k_s + 0.1 k_d <= k_s + k_d.

    ``deep_weight = 0`` is the no-deep-kernel ablation exactly; both switches reach the loss.
    """
    batch = make_batch("scribble")

    def reg(**kw: Any) -> float:
        torch.manual_seed(0)
        return build("dfr", **kw).training_step(batch, 5)["loss/reg"]

    product = reg()  # DFR's default
    assert reg(combine="product") == product
    no_deep = reg(deep_kernel=False)
    assert reg(deep_weight=0.0, combine="sum") == pytest.approx(no_deep, rel=1e-6)
    assert reg(deep_kernel=False, combine="sum") == pytest.approx(no_deep, rel=1e-6)
    light, full = reg(combine="sum", deep_weight=0.1), reg(combine="sum")
    assert 0.0 < product < no_deep < light < full
    with pytest.raises(ValueError, match="combine"):
        build("dfr", combine="max")
    with pytest.raises(ValueError, match="deep_weight"):
        build("dfr", deep_weight=-1.0)


def test_maxsquare_init_from_source_only_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    source = build("source_only")
    source.training_step(make_batch("uda"), 0)
    path = tmp_path / "last.ckpt"
    torch.save({"method": source.state_dict(), "step": 1}, path)
    adapted = build("maxsquare", init_from=str(path))
    image = make_batch("uda")["target"]["image"]
    source.eval()
    adapted.eval()
    torch.testing.assert_close(adapted.predict(image), source.predict(image), atol=0, rtol=0)
    with pytest.raises(FileNotFoundError, match="path"):
        build("maxsquare", init_from=str(tmp_path / "missing.ckpt"))
    torch.save({"method": {}}, tmp_path / "empty.ckpt")
    with pytest.raises(KeyError, match="module/segmenter"):
        build("maxsquare", init_from=str(tmp_path / "empty.ckpt"))


def test_non_finite_loss_stops_before_the_update() -> None:
    method = build("ce")
    batch = make_batch("full")
    batch["image"][0, 0, 0, 0] = float("nan")
    before = _snapshot(method)
    with pytest.raises(NonFiniteLossError, match="loss/seg"):
        method.training_step(batch, 0)
    after = _snapshot(method)
    assert all(torch.equal(before[k][n], after[k][n]) for k in before for n in before[k]), (
        "weights changed on a non-finite step"
    )


def test_every_config_default_is_documented() -> None:
    """Each Config field carries a trailing or preceding comment citing its source."""
    import inspect

    for name, cls in METHODS.items():
        for field in dataclasses.fields(cls.Config):
            documented = None
            for klass in cls.Config.__mro__[:-1]:  # the class that (re)defines the field
                lines = inspect.getsource(klass).splitlines()
                hits = [i for i, ln in enumerate(lines) if ln.strip().startswith(f"{field.name}:")]
                if hits:
                    line, prev = lines[hits[0]], lines[hits[0] - 1].strip()
                    documented = "#" in line or prev.startswith("#")
                    break
            assert documented, f"{name}.{field.name} undocumented"
