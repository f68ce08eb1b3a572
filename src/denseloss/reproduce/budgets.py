"""Study budgets (schedule, scene size, seeds, labelled fractions) and the study-wide scale.

The scale constants are shared by every study definition in :mod:`denseloss.reproduce.studies`;
the reasons for each value are in that module's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BUDGETS", "D_STRIDES", "D_WIDTH", "OUTPUT_STRIDE", "PNE_REFERENCE_CELLS", "Budget"]

OUTPUT_STRIDE = 8  # every built-in study network (deeplabv2, vit patch 8, unet's logits)
# PNE reference map: 512×1024 Cityscapes crops at output stride 8.
PNE_REFERENCE_CELLS = (512 // 8) * (1024 // 8)
D_STRIDES = (2, 2, 1, 1, 1)  # AdvSemiSeg discriminator strides in every study (see above)
# Reference width 64 at 321² crops. At 128² with the strides above, width 32 costs ~0.7 GMAC
# per image and pass, 2 s per adversarial step on one core, 8× the segmenter's step; width 16
# costs a quarter of that (and a weaker D keeps its confidence map informative for longer).
D_WIDTH = 16


@dataclass(frozen=True)
class Budget:
    """Schedule of one study budget (applies to every run of the study)."""

    steps: int  # optimisation steps of a run trained from scratch
    adapt_steps: int  # steps of a run initialised from another run's checkpoint (UDA)
    size: int  # scene side in pixels (= training crop)
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
    # Which run keys a study keeps at this budget (None = all; the runs they are initialised or
    # derived from are kept too). The quick budget keeps the methods and controls the reading
    # rests on, to fit its 15 minutes.
    columns: dict[str, tuple[str, ...]] | None = field(default=None, compare=False)
    data_seed: int = 0  # scenes and labelled split (the same for every method and seed)


BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        steps=100,
        adapt_steps=50,
        size=128,
        train_length=400,
        val_length=48,
        test_length=96,
        batch_size=8,
        seeds=(0, 1, 2),
        fractions=(0.125,),
        columns={
            "semi": ("1_8-ce_labeled_only", "1_8-advsemi"),
            "uda": (
                "source_only",
                "source_only+adabn",
                "minent",
                "minent+adabn",
                "maxsquare",
                "maxsquare+adabn",
                "maxsquare_iw",
                "maxsquare_iw+adabn",
            ),
            "scribble": ("pce", "pce_gatedcrf", "dfr"),
            "full": ("ce", "pne"),
        },
    ),
    "full": Budget(
        steps=240,
        adapt_steps=120,
        size=128,
        train_length=1000,
        val_length=100,
        test_length=200,
        batch_size=8,
        seeds=(0, 1, 2),
        fractions=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0),
    ),
}
