"""SEGMENTERS: the papers' names, the mini networks' aliases, capabilities, ``denseloss list``."""

from __future__ import annotations

import pytest
import torch

from denseloss.cli.listing import describe
from denseloss.config.schema import TrainConfig
from denseloss.models import (
    SEGMENTER_ALIASES,
    SEGMENTER_CAPABILITIES,
    SEGMENTERS,
    build_segmenter,
    require_capability,
    segmenters_with,
)
from denseloss.training.fabric_setup import resolve_accelerator

PAPER = [
    "deeplabv2_resnet101", "deeplabv2_resnet101_multi", "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101", "vit_s16", "vit_b16",
]  # fmt: skip


def test_old_names_build_the_same_mini_networks():
    assert SEGMENTER_ALIASES == {
        "deeplabv2": "deeplabv2_mini",
        "deeplabv3": "deeplabv3_mini",
        "vit": "vit_mini",
    }
    for alias, name in SEGMENTER_ALIASES.items():
        torch.manual_seed(0)
        a = build_segmenter(alias, num_classes=3)
        torch.manual_seed(0)
        b = build_segmenter(name, num_classes=3)
        assert (a.name, b.name) == (alias, name)  # messages use the name the user gave
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_list_shows_paper_networks_and_marks_aliases():
    line = next(x for x in describe().splitlines() if x.startswith("segmenters: "))
    entries = line.removeprefix("segmenters: ").split(", ")
    assert entries[: len(PAPER)] == PAPER
    assert "deeplabv2 (alias of deeplabv2_mini)" in entries
    assert "vit (alias of vit_mini)" in entries
    assert "deeplabv2" not in entries  # only as an alias
    assert len(entries) == len(SEGMENTERS)


def test_capability_check_names_what_is_missing():
    assert segmenters_with("aux_logits") == [
        n for n, caps in SEGMENTER_CAPABILITIES.items() if "aux_logits" in caps
    ]
    assert "deeplabv2_resnet101" not in segmenters_with("aux_logits")
    net = build_segmenter(
        "deeplabv3plus_resnet50", num_classes=3, layers=(1, 1, 1, 1), width=4, aux=False
    )
    assert net.capabilities == frozenset({"features"})
    with pytest.raises(
        ValueError, match=r"pne: the segmenter must provide aux_logits .*'deeplabv3plus_resnet50'"
    ):
        require_capability(net, "aux_logits", method="pne")
    require_capability(net, "features", method="dfr")
    with pytest.raises(ValueError, match="dfr: the segmenter must provide features"):
        require_capability(torch.nn.Conv2d(3, 3, 1), "features", method="dfr")
    with pytest.raises(ValueError, match="capability must be one of"):
        require_capability(net, "depth", method="x")


def test_accelerator_defaults_to_auto_which_is_cpu_without_cuda(monkeypatch):
    assert TrainConfig().accelerator == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_accelerator("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_accelerator("auto") == "cuda"
