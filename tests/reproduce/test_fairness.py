"""The study definitions are fair comparisons, at a scale where each mechanism can act.

Within a study, a method and its baseline share network, auxiliary-head weight, image
normalisation, kernel parameters of shared terms, crop, budget and data; only the method's own
term differs (DEVELOPERS' standards; issue 9). These tests read the definitions in
``denseloss.reproduce.studies`` for every budget, so a change that breaks a comparison fails here.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from denseloss.config.schema import method_class, method_config
from denseloss.reproduce.studies import (
    BUDGETS,
    D_STRIDES,
    PNE_REFERENCE_CELLS,
    QUICK_STUDIES,
    Run,
    study_runs,
)

CASES = [(s, b) for s in (*QUICK_STUDIES, "real") for b in BUDGETS]
CEILINGS = ("oracle (target labels)", "full labels (ceiling)")


def _trained(study: str, budget: str) -> list[Run]:
    return [r for r in study_runs(study, budget) if r.derived_from is None]


def _resolved(run: Run) -> object:
    return method_config(run.config, method_class(run.config.method))


def _field(run: Run, name: str) -> object:
    return getattr(_resolved(run), name, None)


@pytest.mark.parametrize(("study", "budget"), CASES)
def test_every_run_of_a_table_shares_network_optimiser_and_crop(study: str, budget: str) -> None:
    runs = _trained(study, budget)
    for table in {r.table for r in runs}:
        group = [r for r in runs if r.table == table]
        first = group[0].config
        for r in group[1:]:
            c = r.config
            assert c.model == first.model, (study, r.key, "network")
            assert dataclasses.replace(c.optim, schedule_steps=None) == dataclasses.replace(
                first.optim, schedule_steps=None
            ), (study, r.key, "optimiser")
            assert (c.data.size, c.data.batch_size, c.data.seed) == (
                first.data.size,
                first.data.batch_size,
                first.data.seed,
            ), (study, r.key, "crop / batch / scenes")
            assert c.data.augment == first.data.augment


@pytest.mark.parametrize(("study", "budget"), CASES)
def test_runs_of_a_row_share_data_and_budget(study: str, budget: str) -> None:
    b = BUDGETS[budget]
    runs = [r for r in _trained(study, budget) if r.col not in CEILINGS]
    for row in {(r.table, r.row) for r in runs}:
        group = [r for r in runs if (r.table, r.row) == row]
        assert all(r.config.data == group[0].config.data for r in group), (study, row, "data")
        for r in group:
            expected = b.adapt_steps if r.init_from else b.steps
            assert r.config.train.steps == expected, (study, r.key)


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_full_supervision_runs_share_one_aux_weight(budget: str) -> None:
    seg = [r for r in _trained("full", budget) if r.table == "seg"]
    weights = {r.key: _field(r, "aux_weight") for r in seg}
    assert None not in weights.values(), weights  # every recipe exposes the shared term
    assert len(set(weights.values())) == 1, weights


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_uda_methods_share_the_source_term_and_start_from_source_only(budget: str) -> None:
    runs = [r for r in _trained("uda", budget) if r.col not in CEILINGS]
    source = next(r for r in runs if r.key == "source_only")
    # the source model is taken mid-schedule (the reference stops its poly schedule early)
    assert source.config.optim.schedule_steps > source.config.train.steps
    for r in runs:
        assert _field(r, "aux_weight") is not None, r.key
        assert _field(r, "aux_weight") == _field(source, "aux_weight"), r.key
        if r is not source:
            assert r.init_from == "source_only", r.key
            assert r.config.optim.schedule_steps is None  # adaptation restarts its schedule


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_every_uda_method_is_also_reported_with_target_bn(budget: str) -> None:
    runs = study_runs("uda", budget)
    trained = {r.key for r in runs if r.derived_from is None and r.col not in CEILINGS}
    derived = {r.derived_from for r in runs if r.post == "adabn"}
    assert trained == derived
    assert "source_only" in derived  # the AdaBN row itself


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_dfr_and_gated_crf_share_the_shallow_kernel(budget: str) -> None:
    runs = {r.key: r for r in _trained("scribble", budget)}
    gated = _resolved(runs["pce_gatedcrf"])
    dfr_runs = [r for k, r in runs.items() if k.startswith("dfr")]
    assert dfr_runs
    for r in dfr_runs:
        cfg = _resolved(r)
        for name in ("radius", "sigma_xy", "sigma_rgb", "warmup_fraction"):
            assert getattr(cfg, name) == getattr(gated, name), (r.key, name)
        assert cfg.reg_weight == gated.crf_weight, r.key
    if budget == "full":  # the ablation rows isolate DFR's two parts
        assert _resolved(runs["dfr-no_deep"]).deep_kernel is False
        assert _resolved(runs["dfr-no_fc"]).fc_weight == 0


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_adversarial_runs_share_the_discriminator(budget: str) -> None:
    runs = [r for r in _trained("semi", budget) if r.col in ("adv", "advsemi")]
    names = ("ndf", "d_strides", "d_lr", "d_betas", "lambda_adv", "align_corners")
    for name in names:
        assert len({str(_field(r, name)) for r in runs}) == 1, name


def _receptive_field(strides: tuple[int, ...], kernel: int = 4) -> int:
    """RF of a stack of k×k convs: 1 + (k − 1) · Σ_l Π_{m<l} s_m."""
    rf, jump = 1, 1
    for s in strides:
        rf += (kernel - 1) * jump
        jump *= s
    return rf


def test_receptive_field_formula_matches_the_reference() -> None:
    # reference FCDiscriminator: five 4×4 stride-2 convs → 94 px (29 % of 321)
    assert _receptive_field((2, 2, 2, 2, 2)) == 94
    assert _receptive_field((2, 2, 2, 1, 1)) == 70


@pytest.mark.parametrize("budget", list(BUDGETS))
def test_scale_lets_each_mechanism_act(budget: str) -> None:
    from denseloss.models import build_segmenter

    b = BUDGETS[budget]
    # logits (and the PNE / DFR maps, which are at the logits' resolution) at >= 16×16
    for study in QUICK_STUDIES:
        for r in _trained(study, budget):
            if r.config.task != "seg":
                continue
            net = build_segmenter(r.config.model.name, num_classes=6, **r.config.model.kwargs)
            with torch.no_grad():
                out = net.eval()(torch.zeros(1, 3, b.size, b.size))
            assert min(out.logits.shape[-2:]) >= 16, (study, r.key, tuple(out.logits.shape))
    # the discriminator sees well under the crop (reference: 29 %)
    assert _receptive_field(D_STRIDES) <= 0.4 * b.size
    for r in _trained("semi", budget):
        if r.col in ("adv", "advsemi"):
            assert tuple(_field(r, "d_strides")) == D_STRIDES
    # PNE's P and gate keep the reference's share of the embedding map (100 and 199 of 8192)
    pne = next(r for r in _trained("full", budget) if r.key == "pne")
    cells = (b.size // 8) ** 2
    cfg = _resolved(pne)
    assert 0.5 <= cfg.patch_size / (100 * cells / PNE_REFERENCE_CELLS) <= 1.5
    assert 0.5 <= cfg.gate[1] / (199 * cells / PNE_REFERENCE_CELLS) <= 1.5


def _scene_hashes(budget: str, split: str, n: int) -> set[str]:
    from denseloss.data.synthetic import SyntheticScenes

    b = BUDGETS[budget]
    ds = SyntheticScenes(split, size=b.size, seed=b.data_seed, length=n, cache=False)
    return {
        hashlib.sha1(np.ascontiguousarray(ds.render(i)["image"]).tobytes()).hexdigest()
        for i in range(n)
    }


def test_test_scenes_are_disjoint_from_every_tuning_scene() -> None:
    # tuning reads val only, at every budget; no test scene of any budget may be a val scene
    val = set().union(*(_scene_hashes(b, "val", 12) for b in BUDGETS))
    test = set().union(*(_scene_hashes(b, "test", 12) for b in BUDGETS))
    assert val
    assert test
    assert not (val & test)
