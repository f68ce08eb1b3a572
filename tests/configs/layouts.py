"""Tiny on-disk copies of every layout a shipped paper config reads (train + val splits).

The encodings are the real ones (written by ``tests/data/fixtures_builder``'s writers): VOC palette
PNGs and ScribbleSup XML, Cityscapes labelIds, GTA5 palette labelIds, SYNTHIA 16-bit PNGs, ADE20K
0–150 maps, NYUv2 mtan ``.npy``. Images are 36×44 (not a multiple of 16, so the ViT's padded
evaluation and the whole-image padding are exercised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.data.fixtures_builder import (
    write_gray_png,
    write_palette_png,
    write_rgb,
    write_synthia_label,
)

H, W = 36, 44
TRAIN, VAL = 4, 2


def _map(values: list[int], seed: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """(H, W) map of vertical bands cycling through ``values`` (every value present)."""
    bands = (np.arange(size[1])[None, :].repeat(size[0], 0) // 6 + seed) % len(values)
    return np.asarray(values)[bands]


def build_voc(root: Path) -> Path:
    """VOC 2012 + SegmentationClassAug + ScribbleSup XML; ``trainaug`` (4) and ``val`` (2)."""
    voc = root / "VOCdevkit" / "VOC2012"
    ids = {
        "trainaug": [f"2007_00000{k}" for k in range(TRAIN)],
        "val": ["2008_000001", "2008_000002"],
    }
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    xml = voc / "scribble_annotation" / "pascal_2012"
    xml.mkdir(parents=True, exist_ok=True)
    for split, names in ids.items():
        (sets / f"{split}.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            write_rgb(voc / "JPEGImages" / f"{name}.jpg", k, (H, W))
            write_palette_png(voc / "SegmentationClassAug" / f"{name}.png", _map([0, 15, 7, 20], k))
            (xml / f"{name}.xml").write_text(
                f"<annotation><size><width>{W}</width><height>{H}</height></size>"
                "<polygon><tag>person</tag><point><X>2</X><Y>4</Y></point>"
                "<point><X>40</X><Y>4</Y></point></polygon>"
                "<polygon><tag>background</tag><point><X>3</X><Y>30</Y></point>"
                "<point><X>30</X><Y>30</Y></point></polygon></annotation>"
            )
    return root


# Cityscapes labelIds and their trainIds: road, sidewalk, building, car, sky, unlabeled
_RAW = [7, 8, 11, 26, 23, 0]


def build_cityscapes(root: Path) -> Path:
    for split, count in (("train", TRAIN), ("val", VAL)):
        for k in range(count):
            city = ("aachen", "bremen")[k % 2]
            stem = f"{city}_00000{k}_000019"
            write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", k, (H, W))
            raw = _map(_RAW, k)
            write_gray_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
    return root


def build_gta5(root: Path) -> Path:
    for k in range(TRAIN):
        write_rgb(root / "images" / f"0000{k + 1}.png", 10 + k, (H, W))
        write_palette_png(root / "labels" / f"0000{k + 1}.png", _map(_RAW, k))
    return root


def build_synthia(root: Path) -> Path:
    for k in range(TRAIN):
        name = f"000000{k}.png"
        write_rgb(root / "RGB" / name, 20 + k, (H, W))
        # road 3, sidewalk 4, building 2, car 8, sky 1, void 0
        write_synthia_label(root / "GT" / "LABELS" / name, _map([3, 4, 2, 8, 1, 0], k), k)
    return root


def build_ade20k(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for split, folder, count in (("train", "training", TRAIN), ("val", "validation", VAL)):
        for k in range(count):
            stem = f"ADE_{split}_0000000{k + 1}"
            write_rgb(base / "images" / folder / f"{stem}.jpg", 30 + k, (H, W))
            write_gray_png(base / "annotations" / folder / f"{stem}.png", _map([0, 1, 3, 150], k))
    return root


def build_nyuv2(root: Path) -> Path:
    """lorenmt/mtan layout: ``<split>/{image,label,depth,normal}/<k>.npy``, 40×48 (the U-Net
    needs multiples of 8, as the real 288×384 frames are)."""
    h, w = 40, 48
    for split, count in (("train", TRAIN), ("val", VAL)):
        for k in range(count):
            rng = np.random.default_rng(k)
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            arrays = {
                "image": rng.random((h, w, 3)).astype(np.float32),
                "label": _map([-1, 0, 5, 12], k, (h, w)).astype(np.float32),
                "depth": rng.uniform(0.5, 9.0, (h, w, 1)).astype(np.float32),
                "normal": normal / np.linalg.norm(normal, axis=2, keepdims=True),
            }
            for key, value in arrays.items():
                (root / split / key).mkdir(parents=True, exist_ok=True)
                np.save(root / split / key / f"{k}.npy", value)
    return root


BUILDERS = {
    "voc_aug": build_voc,
    "scribblesup": build_voc,
    "cityscapes": build_cityscapes,
    "gta5": build_gta5,
    "synthia": build_synthia,
    "ade20k": build_ade20k,
    "nyuv2": build_nyuv2,
}
