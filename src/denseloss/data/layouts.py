"""Map-style datasets that read the standard dense-prediction layouts as they are on disk.

Each class reads one layout of ``shared/DATA.md`` without conversion and returns sample dicts
(``denseloss.data.sample``): ``image`` (3, H, W) float in [0, 1], ``label`` (H, W) int64 with
255 = ignore, ``valid`` (H, W) bool, ``index`` () int64, plus ``scribble`` / ``depth`` /
``normal`` where the layout has them. Every class exposes ``num_classes``, ``class_names``,
``ignore_index`` (always 255) and ``palette`` (one RGB triple per class, for display only).

Validation happens on read, in the main process or the worker that reads the sample:

* a missing root, split list or listed file raises ``FileNotFoundError`` naming the path and the
  expected layout (files are checked for existence when the dataset is built);
* an undecodable file, a label value outside ``[0, C) ∪ {255}`` after mapping, a raw id the
  encoding does not define, or a label whose size differs from the image raises
  :class:`~denseloss.data.errors.DataError` naming the file.

Class-id mappings (sources in the constants below): Cityscapes/GTA5 labelIds → 19 trainIds
(cityscapesScripts), SYNTHIA ids → the same trainIds and then 16 or 13 contiguous ids, ADE20K
``reduce_zero_label`` (0 → 255, k → k − 1), COCO-Stuff 164k 0–181 → 171 contiguous ids
(mmsegmentation ``tools/dataset_converters/coco_stuff164k.py``), NYUv2 (mtan) −1 → 255.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from denseloss.data.errors import DataError
from denseloss.data.io import (
    check_label_values,
    check_same_size,
    image_to_tensor,
    label_to_tensor,
    map_ids,
    read_image,
    read_index_png,
    read_mat,
    read_npy,
    read_png_unchanged,
)
from denseloss.data.sample import IGNORE_INDEX, Sample

__all__ = [
    "ADE20K",
    "GTA5",
    "SBD",
    "Cityscapes",
    "CocoStuff164k",
    "FolderDataset",
    "LayoutDataset",
    "NYUv2",
    "ScribbleSup",
    "SynthiaRandCityscapes",
    "VOCSegmentation",
    "layout_datasets",
    "voc_palette",
]

Palette = tuple[tuple[int, int, int], ...]


def voc_palette(num_classes: int) -> Palette:
    """The PASCAL VOC colour map (bit-interleaved), for ``num_classes`` ≤ 256 classes."""
    colours = []
    for index in range(num_classes):
        red = green = blue = 0
        code = index
        for shift in range(7, -1, -1):
            red |= ((code >> 0) & 1) << shift
            green |= ((code >> 1) & 1) << shift
            blue |= ((code >> 2) & 1) << shift
            code >>= 3
        colours.append((red, green, blue))
    return tuple(colours)


# --------------------------------------------------------------------------------------------
# Class definitions and id maps
# --------------------------------------------------------------------------------------------

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

# ScribbleSup XML tags use short names (GatedCRFLoss datasets/dataset_voc_sbd_with_weak.py).
SCRIBBLE_TAGS: dict[str, int] = {
    **{name: index for index, name in enumerate(VOC_CLASSES)},
    "plane": 1, "bike": 2, "table": 11, "motorbike": 14, "plant": 16, "monitor": 20, "tv": 20,
}  # fmt: skip

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE: Palette = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
# cityscapesScripts labels.py: labelId → trainId; every other labelId in 0..33 → 255.
CITYSCAPES_LABEL_TO_TRAIN: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
# SYNTHIA-RAND-CITYSCAPES class id (0..22) → Cityscapes trainId (DAFormer convert synthia.py).
SYNTHIA_TO_TRAIN: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13,
    19: 15, 12: 17, 11: 18,
}  # fmt: skip
SYNTHIA_NUM_RAW_IDS = 23
# The evaluation subsets of SYNTHIA→Cityscapes: 16 classes (no terrain, truck, train) and
# 13 classes (also no wall, fence, pole), listed as Cityscapes trainIds.
CITYSCAPES_SUBSETS: dict[int, tuple[int, ...]] = {
    19: tuple(range(19)),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),
    13: (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18),
}

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

COCO_THING_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
COCO_STUFF_CLASSES: tuple[str, ...] = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin",
    "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield",
    "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip
# stuffthingmaps store COCO category id − 1 (0..181). Eleven thing ids of the 2014 paper have no
# annotations (1-based 12 street sign, 26 hat, 29 shoe, 30 eye glasses, 45 plate, 66 mirror,
# 68 window, 69 desk, 71 door, 83 blender, 91 hair brush); dropping them leaves 171 contiguous
# train ids. This reproduces ``clsID_to_trID`` of mmsegmentation's
# tools/dataset_converters/coco_stuff164k.py (12 → 11, 26 → 24, 30 → 26, ..., 181 → 170).
COCO_STUFF_UNUSED_IDS: tuple[int, ...] = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
COCO_STUFF_ID_TO_TRAIN: dict[int, int] = {
    raw: train for train, raw in enumerate(i for i in range(182) if i not in COCO_STUFF_UNUSED_IDS)
}

NYU13_CLASSES: tuple[str, ...] = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
    "table", "tv", "wall", "window",
)  # fmt: skip
NYU40_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip


def _lookup_table(mapping: dict[int, int], size: int, default: int = IGNORE_INDEX) -> np.ndarray:
    """A dense lookup table of ``size`` entries: ``mapping`` where given, ``default`` elsewhere."""
    table = np.full(size, default, dtype=np.int64)
    for raw, train in mapping.items():
        table[raw] = train
    return table


def _subset_table(classes: int) -> np.ndarray:
    """Map Cityscapes trainIds (0..18, 255) to contiguous ids of the ``classes`` subset."""
    if classes not in CITYSCAPES_SUBSETS:
        raise ValueError(f"classes must be one of 19, 16, 13; got {classes}.")
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for new, train in enumerate(CITYSCAPES_SUBSETS[classes]):
        table[train] = new
    return table


# --------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """The files of one sample. ``label`` is None when the layout has no dense mask for it."""

    image: Path
    label: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)


def _missing(path: Path, layout: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path} does not exist. Expected layout: {layout}")


def _require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise _missing(path, layout)
    return path


def _read_ids(path: Path, layout: str) -> list[str]:
    """Read a split list: one id per line; ``img.jpg label.png`` pairs keep the image stem."""
    if not path.is_file():
        raise _missing(path, layout)
    ids = []
    for line in path.read_text().splitlines():
        token = line.strip().split(" ")[0] if line.strip() else ""
        if token:
            ids.append(Path(token).stem if "/" in token or "." in token else token)
    if not ids:
        raise DataError(f"{path}: split list is empty.")
    return ids


def _check_records(records: Sequence[Record], layout: str) -> None:
    """Raise ``FileNotFoundError`` for the first listed file that is missing."""
    existing: dict[Path, set[str]] = {}
    for record in records:
        paths = [record.image, *record.extra.values()]
        if record.label is not None:
            paths.append(record.label)
        for path in paths:
            names = existing.get(path.parent)
            if names is None:
                names = {p.name for p in path.parent.iterdir()} if path.parent.is_dir() else set()
                existing[path.parent] = names
            if path.name not in names:
                raise _missing(path, layout)


def _first_dir(candidates: Sequence[Path], marker: str, layout: str) -> Path:
    """The first candidate directory that contains ``marker``; else ``FileNotFoundError``."""
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    if not candidates[0].exists():
        raise _missing(candidates[0], layout)
    raise FileNotFoundError(
        f"no {marker!r} found under {', '.join(str(c) for c in candidates)}. Expected layout: "
        f"{layout}"
    )


class LayoutDataset(Dataset):
    """Base class: a list of :class:`Record` plus a label reader that returns train ids.

    Subclasses set ``num_classes``, ``class_names``, ``palette`` and ``layout`` and implement
    :meth:`read_label`, returning an ``(H, W)`` int64 array of train ids (255 = ignore).
    """

    num_classes: int
    class_names: tuple[str, ...]
    palette: Palette
    ignore_index: int = IGNORE_INDEX
    layout: str = ""

    def __init__(self, records: Sequence[Record]) -> None:
        if not records:
            raise FileNotFoundError(f"no samples found. Expected layout: {self.layout}")
        _check_records(records, self.layout)
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def read_label(self, record: Record) -> np.ndarray:
        """Return the dense train-id map of ``record`` (``(H, W)`` int64, 255 = ignore)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        image = read_image(record.image)
        sample: Sample = {"image": image_to_tensor(image)}
        if record.label is not None:
            sample["label"] = self._checked(self.read_label(record), image, record, record.label)
        sample.update(self.read_extra(record, image))
        sample["valid"] = torch.ones(image.shape[:2], dtype=torch.bool)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample

    def read_extra(self, record: Record, image: np.ndarray) -> Sample:
        """Additional keys (scribble, depth, normal); none by default."""
        return {}

    def _checked(
        self, label: np.ndarray, image: np.ndarray, record: Record, path: Path
    ) -> torch.Tensor:
        check_same_size(image, label, record.image, path)
        check_label_values(label, self.num_classes, self.ignore_index, path)
        return label_to_tensor(label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(samples={len(self)}, num_classes={self.num_classes})"


# --------------------------------------------------------------------------------------------
# PASCAL VOC 2012 (+ SBD / SegmentationClassAug) and ScribbleSup
# --------------------------------------------------------------------------------------------

_VOC_LAYOUT = (
    "VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNG), "
    "SegmentationClassAug/<id>.png (aug), ImageSets/Segmentation/<split>.txt}"
)


def _voc_dir(root: str | Path) -> Path:
    root = Path(root)
    candidates = [root / "VOCdevkit" / "VOC2012", root / "VOC2012", root]
    return _first_dir(candidates, "JPEGImages", _VOC_LAYOUT)


def _voc_split_ids(voc: Path, split: str) -> list[str]:
    folder = voc / "ImageSets" / "Segmentation"
    path = folder / f"{split}.txt"
    if split == "trainaug" and not path.is_file() and (folder / "aug.txt").is_file():
        path = folder / "aug.txt"  # the name mmsegmentation's voc_aug.py writes
    return _read_ids(path, _VOC_LAYOUT)


class VOCSegmentation(LayoutDataset):
    """PASCAL VOC 2012 segmentation, 21 classes, palette-PNG labels read as indices.

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` (or the ``VOC2012`` folder itself).
        split: name of a list in ``ImageSets/Segmentation`` (``train``, ``val``, ``trainval``,
            ``trainaug``; ``trainaug`` falls back to mmsegmentation's ``aug.txt``).
        aug: read masks from ``SegmentationClassAug`` (SBD-augmented, 10,582 train images).
        sbd_root: with ``aug``, the SBD ``benchmark_RELEASE/dataset`` folder whose ``cls/*.mat``
            serve the ids that have no ``SegmentationClassAug`` PNG.

    Raises:
        FileNotFoundError: the layout, split list or a listed file is missing.
    """

    num_classes = 21
    class_names = VOC_CLASSES
    palette = voc_palette(21)
    layout = _VOC_LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        aug: bool = False,
        *,
        sbd_root: str | Path | None = None,
    ) -> None:
        voc = _voc_dir(root)
        label_dir = voc / ("SegmentationClassAug" if aug else "SegmentationClass")
        sbd_cls = _sbd_dir(sbd_root) / "cls" if (aug and sbd_root is not None) else None
        records = []
        for image_id in _voc_split_ids(voc, split):
            label = label_dir / f"{image_id}.png"
            if sbd_cls is not None and not label.is_file():
                label = sbd_cls / f"{image_id}.mat"
            records.append(Record(voc / "JPEGImages" / f"{image_id}.jpg", label))
        self.root = voc
        super().__init__(records)

    def read_label(self, record: Record) -> np.ndarray:
        """Palette PNG indices (or SBD ``GTcls.Segmentation``); 255 = void."""
        if record.label is not None and record.label.suffix == ".mat":
            return read_mat(record.label, "GTcls.Segmentation").astype(np.int64)
        return read_index_png(record.label).astype(np.int64)


_SBD_LAYOUT = "benchmark_RELEASE/dataset/{img/<id>.jpg, cls/<id>.mat (GTcls), <split>.txt}"


def _sbd_dir(root: str | Path) -> Path:
    root = Path(root)
    candidates = [root / "benchmark_RELEASE" / "dataset", root / "dataset", root]
    return _first_dir(candidates, "cls", _SBD_LAYOUT)


class SBD(VOCSegmentation):
    """Semantic Boundaries Dataset class masks (``cls/*.mat``, ``GTcls.Segmentation``), 21 classes.

    Args:
        root: ``benchmark_RELEASE/dataset`` or a folder above it.
        split: ``train`` or ``val`` (``<split>.txt`` next to ``cls/``).
    """

    layout = _SBD_LAYOUT

    def __init__(self, root: str | Path, split: str = "train") -> None:
        sbd = _sbd_dir(root)
        records = [
            Record(sbd / "img" / f"{i}.jpg", sbd / "cls" / f"{i}.mat")
            for i in _read_ids(sbd / f"{split}.txt", _SBD_LAYOUT)
        ]
        self.root = sbd
        LayoutDataset.__init__(self, records)


_SCRIBBLE_LAYOUT = (
    "VOC layout plus scribble_annotation/pascal_2012/<id>.xml (form='xml') or "
    "pascal_2012_scribble/<id>.png (form='png'), next to JPEGImages or under root"
)


def rasterize_scribbles(path: str | Path, stroke_width: int = 3) -> np.ndarray:
    """Rasterise one ScribbleSup XML file into an ``(H, W)`` int64 map, 255 off the strokes.

    The XML holds ``<size><width/><height/></size>`` and one ``<polygon>`` per scribble with a
    class ``<tag>`` (short VOC names: plane, bike, table, plant, monitor, ...) and its
    ``<point><X/><Y/></point>`` sequence, drawn as an open polyline ``stroke_width`` pixels wide
    (later scribbles overwrite earlier ones where they cross). The 1-px ``cv2.polylines`` line is
    dilated with a ``stroke_width``-wide disk, because ``cv2.polylines(thickness=3)`` itself
    draws 5-px-wide lines.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: malformed XML, a missing size, or an unknown class tag.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scribble file not found: {path}")
    try:
        tree = ET.parse(path).getroot()
        width = int(tree.findtext("size/width", ""))
        height = int(tree.findtext("size/height", ""))
    except (ET.ParseError, ValueError) as error:
        raise DataError(f"{path}: malformed ScribbleSup XML ({error}).") from error
    canvas = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (stroke_width, stroke_width))
    for polygon in tree.iter("polygon"):
        tag = (polygon.findtext("tag") or "").strip().lower()
        if tag not in SCRIBBLE_TAGS:
            raise DataError(
                f"{path}: scribble tag must be a VOC class name; got {tag!r}. "
                f"Known tags: {sorted(SCRIBBLE_TAGS)}."
            )
        try:
            points = [
                (round(float(p.findtext("X", ""))), round(float(p.findtext("Y", ""))))
                for p in polygon.iter("point")
            ]
        except ValueError as error:
            raise DataError(f"{path}: scribble point is not numeric ({error}).") from error
        if not points:
            continue
        stroke = np.zeros_like(canvas)
        array = np.asarray(points, dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(stroke, [array], False, 1, thickness=1)
        if stroke_width > 1:
            stroke = cv2.dilate(stroke, kernel)
        canvas[stroke > 0] = SCRIBBLE_TAGS[tag]
    return canvas.astype(np.int64)


class ScribbleSup(VOCSegmentation):
    """ScribbleSup scribbles on VOC 2012: ``scribble`` (sparse ids, 255 elsewhere) [+ ``label``].

    Args:
        root: VOC root (as for :class:`VOCSegmentation`).
        split: VOC split list (scribbles cover ``trainaug``).
        form: ``"xml"`` (original polygons, rasterised with ``stroke_width``) or ``"png"``
            (rloss ``pascal_2012_scribble`` PNGs, already 3 px wide).
        stroke_width: line width in pixels for ``form="xml"``.
        scribble_dir: folder of the scribble files, if not at the default place.

    The dense ``label`` is returned when every listed image has a VOC mask
    (``SegmentationClassAug`` preferred, else ``SegmentationClass``), so that batches collate.
    """

    layout = _SCRIBBLE_LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        form: Literal["xml", "png"] = "xml",
        stroke_width: int = 3,
        *,
        scribble_dir: str | Path | None = None,
    ) -> None:
        if form not in ("xml", "png"):
            raise ValueError(f"ScribbleSup: form must be 'xml' or 'png'; got {form!r}.")
        if stroke_width < 1:
            raise ValueError(f"ScribbleSup: stroke_width must be >= 1; got {stroke_width}.")
        voc = _voc_dir(root)
        sub = (
            Path("scribble_annotation/pascal_2012")
            if form == "xml"
            else Path("pascal_2012_scribble")
        )
        if scribble_dir is None:
            options = [voc / sub, Path(root) / sub]
            scribble_dir = next((d for d in options if d.is_dir()), options[0])
        scribbles = _require_dir(Path(scribble_dir), _SCRIBBLE_LAYOUT)
        ids = _voc_split_ids(voc, split)
        masks = [_voc_mask(voc, i) for i in ids]
        dense = all(m is not None for m in masks)
        self.form, self.stroke_width, self.root = form, stroke_width, voc
        records = [
            Record(
                voc / "JPEGImages" / f"{i}.jpg",
                mask if dense else None,
                {"scribble": scribbles / f"{i}.{form}"},
            )
            for i, mask in zip(ids, masks)
        ]
        LayoutDataset.__init__(self, records)

    def read_extra(self, record: Record, image: np.ndarray) -> Sample:
        """The rasterised (xml) or stored (png) scribble map, validated like a label."""
        path = record.extra["scribble"]
        if self.form == "xml":
            scribble = rasterize_scribbles(path, self.stroke_width)
        else:
            scribble = read_index_png(path).astype(np.int64)
        return {"scribble": self._checked(scribble, image, record, path)}


def _voc_mask(voc: Path, image_id: str) -> Path | None:
    for folder in ("SegmentationClassAug", "SegmentationClass"):
        path = voc / folder / f"{image_id}.png"
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------------------------
# Cityscapes, GTA5, SYNTHIA (the 19-class urban label space)
# --------------------------------------------------------------------------------------------

_CITYSCAPES_LAYOUT = (
    "leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and "
    "gtFine/<split>/<city>/<name>_gtFine_labelIds.png (or _labelTrainIds.png)"
)
_CITYSCAPES_TABLE = _lookup_table(CITYSCAPES_LABEL_TO_TRAIN, 34)


class _UrbanDataset(LayoutDataset):
    """Shared by the 19-class urban data sets: optional 16/13-class subset of the trainIds."""

    def _set_classes(self, classes: int) -> None:
        self.subset = _subset_table(classes)
        kept = CITYSCAPES_SUBSETS[classes]
        self.num_classes = classes
        self.class_names = tuple(CITYSCAPES_CLASSES[i] for i in kept)
        self.palette = tuple(CITYSCAPES_PALETTE[i] for i in kept)

    def _train_ids(self, path: Path) -> np.ndarray:
        """Read ``*_labelTrainIds.png`` (already converted) or ``labelIds`` and map them."""
        raw = read_index_png(path)
        if path.stem.endswith("labelTrainIds"):
            train = raw.astype(np.int64)
            check_label_values(train, 19, IGNORE_INDEX, path)
        else:
            train = map_ids(raw, _CITYSCAPES_TABLE, path, what="Cityscapes labelIds (0..33)")
        return self.subset[train]


class Cityscapes(_UrbanDataset):
    """Cityscapes fine annotations, labelIds mapped to the 19 trainIds (255 = ignore).

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        classes: 19 (all), or the 16 / 13 classes of SYNTHIA→Cityscapes evaluation (contiguous
            ids in the order of :data:`CITYSCAPES_SUBSETS`).

    A ``*_gtFine_labelTrainIds.png`` next to the labelIds file (mmseg/cityscapesScripts
    converters) is read instead of mapping ``*_gtFine_labelIds.png``.
    """

    layout = _CITYSCAPES_LAYOUT

    def __init__(self, root: str | Path, split: str = "train", classes: int = 19) -> None:
        self._set_classes(classes)
        root = Path(root)
        images = _require_dir(root / "leftImg8bit" / split, _CITYSCAPES_LAYOUT)
        labels = root / "gtFine" / split
        records = []
        for image in sorted(images.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            folder = labels / image.parent.name
            label = folder / f"{stem}_gtFine_labelTrainIds.png"
            if not label.is_file():
                label = folder / f"{stem}_gtFine_labelIds.png"
            records.append(Record(image, label))
        self.root = root
        super().__init__(records)

    def read_label(self, record: Record) -> np.ndarray:
        """TrainIds (of the chosen subset), 255 = ignore."""
        return self._train_ids(record.label)


def _listed_or_all(root: Path, folder: Path, split: str, layout: str) -> list[str]:
    """File names from ``<root>/<split>.txt`` if present; all of ``folder`` for train/all."""
    listing = root / f"{split}.txt"
    if listing.is_file():
        return [
            Path(line.strip()).name for line in listing.read_text().splitlines() if line.strip()
        ]
    if split in ("all", "train"):
        return sorted(p.name for p in folder.glob("*.png"))
    raise _missing(listing, layout + f"; split {split!r} needs a list file")


_GTA5_LAYOUT = "gta/{images/NNNNN.png, labels/NNNNN.png (palette PNG, index = labelId)}"


class GTA5(_UrbanDataset):
    """GTA5 (Playing for Data), palette-PNG labelIds mapped to the 19 Cityscapes trainIds.

    Args:
        root: folder holding ``images/`` and ``labels/``.
        split: ``all``/``train`` (every image), or a name with a ``<root>/<split>.txt`` list of
            file names.
        classes: 19, 16 or 13 (see :class:`Cityscapes`).
    """

    layout = _GTA5_LAYOUT

    def __init__(self, root: str | Path, split: str = "all", classes: int = 19) -> None:
        self._set_classes(classes)
        root = Path(root)
        images = _require_dir(root / "images", _GTA5_LAYOUT)
        labels = root / "labels"
        records = []
        for name in _listed_or_all(root, images, split, _GTA5_LAYOUT):
            converted = labels / f"{Path(name).stem}_labelTrainIds.png"
            records.append(
                Record(images / name, converted if converted.is_file() else labels / name)
            )
        self.root = root
        super().__init__(records)

    def read_label(self, record: Record) -> np.ndarray:
        """TrainIds (of the chosen subset), 255 = ignore."""
        return self._train_ids(record.label)


_SYNTHIA_LAYOUT = "synthia/{RGB/NNNNNNN.png, GT/LABELS/NNNNNNN.png (16-bit, class in channel R)}"
_SYNTHIA_TABLE = _lookup_table(SYNTHIA_TO_TRAIN, SYNTHIA_NUM_RAW_IDS)


class SynthiaRandCityscapes(_UrbanDataset):
    """SYNTHIA-RAND-CITYSCAPES, 16-bit label PNGs mapped to 16 (or 13) contiguous classes.

    The class id is the first stored channel (R). OpenCV's ``IMREAD_UNCHANGED`` returns the
    channels as B, G, R(, A), so the id is ``array[:, :, 2]`` for both 3- and 4-channel files
    (DAFormer's ``[:, :, -1]`` is the same channel for 3-channel files only). Pillow would read
    the 16-bit RGB file as 8-bit RGB, so it is not used here.

    Args:
        root: folder holding ``RGB/`` and ``GT/LABELS/``.
        split: ``all``/``train`` or a name with a ``<root>/<split>.txt`` list.
        classes: 16 (no terrain, truck, train) or 13 (also no wall, fence, pole).
    """

    layout = _SYNTHIA_LAYOUT

    def __init__(self, root: str | Path, split: str = "all", classes: int = 16) -> None:
        if classes not in (16, 13):
            raise ValueError(f"SynthiaRandCityscapes: classes must be 16 or 13; got {classes}.")
        self._set_classes(classes)
        root = Path(root)
        images = _require_dir(root / "RGB", _SYNTHIA_LAYOUT)
        labels = root / "GT" / "LABELS"
        records = [
            Record(images / name, labels / name)
            for name in _listed_or_all(root, images, split, _SYNTHIA_LAYOUT)
        ]
        self.root = root
        super().__init__(records)

    def read_label(self, record: Record) -> np.ndarray:
        """Contiguous ids of the 16/13-class subset, 255 = void or unused class."""
        array = read_png_unchanged(record.label)
        if array.ndim != 3 or array.shape[2] < 3 or array.dtype != np.uint16:
            raise DataError(
                f"{record.label}: SYNTHIA label must be a 16-bit PNG with >= 3 channels; got "
                f"dtype {array.dtype} with shape {array.shape}. Hint: GT/COLOR is for display; "
                "read GT/LABELS."
            )
        train = map_ids(array[:, :, 2], _SYNTHIA_TABLE, record.label, what="SYNTHIA class ids")
        return self.subset[train]


# --------------------------------------------------------------------------------------------
# ADE20K and COCO-Stuff 164k
# --------------------------------------------------------------------------------------------

_ADE_LAYOUT = "ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}"
_ADE_SPLITS = {"train": "training", "training": "training", "val": "validation"}
_ADE_SPLITS["validation"] = "validation"
_ADE_TABLE = np.concatenate([[IGNORE_INDEX], np.arange(150)]).astype(np.int64)


def _paired(images: Path, labels: Path, pattern: str) -> list[Record]:
    return [Record(p, labels / f"{p.stem}.png") for p in sorted(images.glob(pattern))]


class ADE20K(LayoutDataset):
    """ADE20K SceneParsing, 150 classes with ``reduce_zero_label`` (0 "other" → 255, k → k − 1).

    Args:
        root: ``ADEChallengeData2016`` or the folder holding it.
        split: ``train``/``training`` or ``val``/``validation``.
    """

    num_classes = 150
    class_names = ADE20K_CLASSES
    palette = voc_palette(150)
    layout = _ADE_LAYOUT

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in _ADE_SPLITS:
            raise ValueError(f"ADE20K: split must be one of {sorted(_ADE_SPLITS)}; got {split!r}.")
        root = Path(root)
        base = _first_dir([root / "ADEChallengeData2016", root], "images", _ADE_LAYOUT)
        folder = _ADE_SPLITS[split]
        images = _require_dir(base / "images" / folder, _ADE_LAYOUT)
        self.root = base
        super().__init__(_paired(images, base / "annotations" / folder, "*.jpg"))

    def read_label(self, record: Record) -> np.ndarray:
        """Reduced ids 0..149, 255 = "other"."""
        raw = read_index_png(record.label)
        return map_ids(raw, _ADE_TABLE, record.label, what="ADE20K class ids (0..150)")


_COCO_LAYOUT = (
    "coco_stuff164k/{images,annotations}/{train2017,val2017}/<id>.jpg / <id>.png "
    "(stuffthingmaps 0..181, 255) or <id>_labelTrainIds.png"
)
_COCO_TABLE = _lookup_table(COCO_STUFF_ID_TO_TRAIN, 256, default=-1)
_COCO_TABLE[IGNORE_INDEX] = IGNORE_INDEX


class CocoStuff164k(LayoutDataset):
    """COCO-Stuff 164k, stuffthingmaps ids 0–181 mapped to 171 contiguous train ids.

    The 11 unused thing ids (:data:`COCO_STUFF_UNUSED_IDS`) never occur in valid maps; a map
    containing one raises :class:`DataError`. ``<id>_labelTrainIds.png`` (mmsegmentation's
    converter output) is read as-is when present.

    Args:
        root: ``coco_stuff164k`` folder (holding ``images/`` and ``annotations/``).
        split: ``train``/``train2017`` or ``val``/``val2017``.
    """

    num_classes = 171
    class_names = COCO_THING_CLASSES + COCO_STUFF_CLASSES
    palette = voc_palette(171)
    layout = _COCO_LAYOUT

    def __init__(self, root: str | Path, split: str = "train") -> None:
        folder = split if split.endswith("2017") else f"{split}2017"
        root = Path(root)
        images = _require_dir(root / "images" / folder, _COCO_LAYOUT)
        labels = root / "annotations" / folder
        records = []
        for image in sorted(images.glob("*.jpg")):
            converted = labels / f"{image.stem}_labelTrainIds.png"
            records.append(
                Record(image, converted if converted.is_file() else labels / f"{image.stem}.png")
            )
        self.root = root
        super().__init__(records)

    def read_label(self, record: Record) -> np.ndarray:
        """Train ids 0..170, 255 = unlabeled."""
        raw = read_index_png(record.label)
        if record.label.stem.endswith("_labelTrainIds"):
            return raw.astype(np.int64)
        return map_ids(raw, _COCO_TABLE, record.label, what="COCO-Stuff ids (0..181 used, 255)")


# --------------------------------------------------------------------------------------------
# NYU Depth v2 (multi-task repackagings)
# --------------------------------------------------------------------------------------------

_MTAN_LAYOUT = "<root>/{train,val}/{image,label,depth,normal}/<i>.npy (lorenmt/mtan)"
_NYUD_MT_LAYOUT = (
    "NYUD_MT/{images/<id>.jpg, segmentation/<id>.mat, depth/<id>.mat, normals/<id>.jpg, "
    "gt_sets/<split>.txt} (facebookresearch/astmt)"
)


class NYUv2(LayoutDataset):
    """NYU Depth v2 with segmentation, depth and surface normals.

    ``layout="mtan"`` (lorenmt/mtan, LibMTL): ``.npy`` files at 288×384 — image (H, W, 3) float
    in [0, 1], label (H, W) 13 classes with −1 → 255, depth (H, W, 1) metres with 0 = missing,
    normal (H, W, 3) in [−1, 1]. Splits ``train`` and ``val`` (``test`` is an alias of ``val``).

    ``layout="nyud_mt"`` (facebookresearch/astmt NYUD_MT): JPEG images, ``segmentation/*.mat``
    (40 classes, 0 = void → 255, k → k − 1), ``depth/*.mat`` (metres), normals as RGB JPEG
    ``(n + 1) / 2 · 255`` decoded back to [−1, 1]; splits from ``gt_sets/<split>.txt``.

    Normals are returned as stored (unit length up to quantisation); an all-zero normal marks a
    missing value.
    """

    palette = voc_palette(40)
    layout = _MTAN_LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        layout: Literal["mtan", "nyud_mt"] = "mtan",
    ) -> None:
        root = Path(root)
        self.format = layout
        if layout == "mtan":
            self.num_classes, self.class_names = 13, NYU13_CLASSES
            self.palette = voc_palette(13)
            records = self._mtan_records(root, split)
        elif layout == "nyud_mt":
            self.layout = _NYUD_MT_LAYOUT
            self.num_classes, self.class_names = 40, NYU40_CLASSES
            records = self._nyud_records(root, split)
        else:
            raise ValueError(f"NYUv2: layout must be 'mtan' or 'nyud_mt'; got {layout!r}.")
        self.root = root
        super().__init__(records)

    @staticmethod
    def _mtan_records(root: Path, split: str) -> list[Record]:
        folder = _require_dir(root / ("val" if split == "test" else split), _MTAN_LAYOUT)
        images = _require_dir(folder / "image", _MTAN_LAYOUT)
        names = sorted((p.name for p in images.glob("*.npy")), key=lambda n: int(Path(n).stem))
        return [
            Record(
                images / n,
                folder / "label" / n,
                {"depth": folder / "depth" / n, "normal": folder / "normal" / n},
            )
            for n in names
        ]

    @staticmethod
    def _nyud_records(root: Path, split: str) -> list[Record]:
        ids = _read_ids(root / "gt_sets" / f"{split}.txt", _NYUD_MT_LAYOUT)
        return [
            Record(
                root / "images" / f"{i}.jpg",
                root / "segmentation" / f"{i}.mat",
                {"depth": root / "depth" / f"{i}.mat", "normal": root / "normals" / f"{i}.jpg"},
            )
            for i in ids
        ]

    def __getitem__(self, index: int) -> Sample:
        if self.format == "nyud_mt":
            return super().__getitem__(index)
        record = self.records[index]
        image = read_npy(record.image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"{record.image}: image must be (H, W, 3); got {image.shape}.")
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        elif not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
            raise DataError(f"{record.image}: float image must hold finite values in [0, 1].")
        sample: Sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
            "label": self._checked(self.read_label(record), image, record, record.label),
        }
        sample.update(self.read_extra(record, image))
        sample["valid"] = torch.ones(image.shape[:2], dtype=torch.bool)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample

    def read_label(self, record: Record) -> np.ndarray:
        """13-class (mtan) or 40-class (NYUD_MT) ids, 255 = void."""
        if self.format == "mtan":
            raw = read_npy(record.label)
            if not np.array_equal(raw, np.round(raw)):
                raise DataError(f"{record.label}: label must hold integer class ids.")
            label = raw.astype(np.int64)
            label[label == -1] = IGNORE_INDEX
            return label
        raw = read_mat(record.label, "segmentation").astype(np.int64)
        return np.where(raw == 0, IGNORE_INDEX, raw - 1)

    def read_extra(self, record: Record, image: np.ndarray) -> Sample:
        """``depth`` (1, H, W) metres (0 = missing) and ``normal`` (3, H, W) in [−1, 1]."""
        depth_path, normal_path = record.extra["depth"], record.extra["normal"]
        if self.format == "mtan":
            depth, normal = read_npy(depth_path), read_npy(normal_path)
        else:
            depth = read_mat(depth_path, "depth")
            normal = read_image(normal_path).astype(np.float32) / 255.0 * 2.0 - 1.0
        return {
            "depth": _depth_tensor(depth, image, record, depth_path),
            "normal": _normal_tensor(normal, image, record, normal_path),
        }


def _depth_tensor(depth: np.ndarray, image: np.ndarray, record: Record, path: Path) -> torch.Tensor:
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise DataError(f"{path}: depth must be (H, W) or (H, W, 1); got {depth.shape}.")
    check_same_size(image, depth, record.image, path)
    if not np.isfinite(depth).all() or depth.min() < 0:
        raise DataError(f"{path}: depth must be finite and >= 0 (0 = missing).")
    return torch.from_numpy(np.ascontiguousarray(depth))[None]


def _normal_tensor(
    normal: np.ndarray, image: np.ndarray, record: Record, path: Path
) -> torch.Tensor:
    normal = np.asarray(normal, dtype=np.float32)
    if normal.ndim != 3 or normal.shape[2] != 3:
        raise DataError(f"{path}: normals must be (H, W, 3); got {normal.shape}.")
    check_same_size(image, normal, record.image, path)
    if not np.isfinite(normal).all() or np.abs(normal).max() > 1.0 + 1e-3:
        raise DataError(f"{path}: normals must be finite with components in [-1, 1].")
    return torch.from_numpy(np.ascontiguousarray(normal.transpose(2, 0, 1)))


# --------------------------------------------------------------------------------------------
# Generic folder layout
# --------------------------------------------------------------------------------------------

_FOLDER_LAYOUT = (
    "<root>/{dataset.yaml|dataset.json, images/, labels/ [, scribbles/, depth/, normals/] "
    "[, splits/<split>.txt]}, or images/<split>/ and labels/<split>/ subfolders"
)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def _load_description(root: Path, *, needs_classes: bool = True) -> dict[str, Any]:
    for name in ("dataset.yaml", "dataset.yml", "dataset.json"):
        path = root / name
        if path.is_file():
            try:
                if path.suffix == ".json":
                    content = json.loads(path.read_text())
                else:
                    content = yaml.safe_load(path.read_text())
            except (ValueError, OSError, yaml.YAMLError) as error:
                raise DataError(f"{path}: cannot parse dataset description ({error}).") from error
            return _checked_description(content, path, needs_classes=needs_classes)
    if not needs_classes:  # depth / normals only: nothing to describe
        return _checked_description({}, root / "dataset.yaml", needs_classes=False)
    raise _missing(root / "dataset.yaml", _FOLDER_LAYOUT)


def _checked_description(content: object, path: Path, *, needs_classes: bool) -> dict[str, Any]:
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise DataError(f"{path}: must be a mapping (classes, palette, ignore_index, ...).")
    if "classes" not in content and needs_classes:
        raise DataError(
            f"{path}: must have a 'classes' list of names when labels/ or scribbles/ exist."
        )
    if not isinstance(content.get("classes", []), list):
        raise DataError(f"{path}: 'classes' must be a list of names; got {content['classes']!r}.")
    classes = [str(c) for c in content.get("classes", [])]
    palette = content.get("palette", voc_palette(len(classes)))
    if len(palette) != len(classes) or any(len(c) != 3 for c in palette):
        raise DataError(
            f"{path}: 'palette' must hold one [r, g, b] per class ({len(classes)}); "
            f"got {len(palette)} entries."
        )
    ignore = int(content.get("ignore_index", IGNORE_INDEX))
    if 0 <= ignore < len(classes):
        raise DataError(f"{path}: ignore_index must not be a class id; got {ignore}.")
    return {
        "classes": tuple(classes),
        "palette": tuple(tuple(int(v) for v in c) for c in palette),
        "ignore_index": ignore,
        "depth_scale": float(content.get("depth_scale", 1.0)),
    }


def _index_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in (*_IMAGE_SUFFIXES, ".npy")
    }


class FolderDataset(LayoutDataset):
    """A user folder: ``images/`` + ``labels/`` [+ ``scribbles/``, ``depth/``, ``normals/``].

    ``dataset.yaml`` (or ``.json``) describes the classes::

        classes: [background, road, car]
        palette: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional
        ignore_index: 255                                   # optional, default 255
        depth_scale: 1000.0                                 # optional: PNG depth units per metre

    ``classes`` is required only when ``labels/`` or ``scribbles/`` exist; a depth / normals
    folder may omit the file altogether. Files are matched by stem. Labels and scribbles are
    lossless index PNGs (values in ``[0, C)`` or ``ignore_index``, which is returned as 255;
    JPEG labels are refused); depth is ``.npy`` in metres or a 16-bit PNG divided by
    ``depth_scale``; normals are ``.npy`` in [−1, 1] or 8-bit RGB ``(n + 1) / 2 · 255``.
    An image without a label file has no ``label`` key: the semi-supervised regime uses such
    images as its unlabelled set; the other regimes refuse them before training.

    Args:
        root: the folder.
        split: a list ``splits/<split>.txt`` (stems) if present; else ``images/<split>/`` and
            ``labels/<split>/`` subfolders if present; else ``"all"`` takes every image.
    """

    layout = _FOLDER_LAYOUT

    def __init__(self, root: str | Path, split: str = "all") -> None:
        root = _require_dir(Path(root), _FOLDER_LAYOUT)
        needs_classes = (root / "labels").is_dir() or (root / "scribbles").is_dir()
        description = _load_description(root, needs_classes=needs_classes)
        self.class_names = description["classes"]
        self.num_classes = len(self.class_names)
        self.palette = description["palette"]
        self.source_ignore_index = description["ignore_index"]
        self.depth_scale = description["depth_scale"]
        sub = split if (root / "images" / split).is_dir() else ""
        images = _index_by_stem(_require_dir(root / "images" / sub, _FOLDER_LAYOUT))
        stems = self._stems(root, split, sub, images)
        folders = {
            k: _index_by_stem(root / k / sub) for k in ("labels", "scribbles", "depth", "normals")
        }
        records = []
        for stem in stems:
            if stem not in images:
                raise _missing(root / "images" / sub / f"{stem}.*", _FOLDER_LAYOUT)
            label = folders["labels"].get(stem)  # None: an unlabelled image
            extra = {k: v[stem] for k, v in folders.items() if k != "labels" and stem in v}
            records.append(Record(images[stem], label, extra))
        self.root = root
        super().__init__(records)

    @staticmethod
    def _stems(root: Path, split: str, sub: str, images: dict[str, Path]) -> list[str]:
        listing = root / "splits" / f"{split}.txt"
        if listing.is_file():
            return _read_ids(listing, _FOLDER_LAYOUT)
        if sub or split == "all":
            return sorted(images)
        raise _missing(listing, _FOLDER_LAYOUT)

    def _ids(self, path: Path) -> np.ndarray:
        ids = read_index_png(path).astype(np.int64)
        if self.source_ignore_index != IGNORE_INDEX:
            ids = np.where(ids == self.source_ignore_index, IGNORE_INDEX, ids)
        return ids

    def read_label(self, record: Record) -> np.ndarray:
        """Index PNG ids, the description's ignore value returned as 255."""
        return self._ids(record.label)

    def read_extra(self, record: Record, image: np.ndarray) -> Sample:
        """Whichever of scribble / depth / normal the folder provides for this stem."""
        out: Sample = {}
        if "scribbles" in record.extra:
            path = record.extra["scribbles"]
            out["scribble"] = self._checked(self._ids(path), image, record, path)
        if "depth" in record.extra:
            path = record.extra["depth"]
            if path.suffix == ".npy":
                depth = read_npy(path)
            else:
                depth = read_png_unchanged(path).astype(np.float32) / self.depth_scale
            out["depth"] = _depth_tensor(depth, image, record, path)
        if "normals" in record.extra:
            path = record.extra["normals"]
            if path.suffix == ".npy":
                normal = read_npy(path)
            else:
                normal = read_image(path).astype(np.float32) / 255.0 * 2.0 - 1.0
            out["normal"] = _normal_tensor(normal, image, record, path)
        return out


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _voc(root: str | Path, split: str = "train", **kw: Any) -> VOCSegmentation:
    return VOCSegmentation(root, split, **kw)


def _voc_aug(root: str | Path, split: str = "trainaug", **kw: Any) -> VOCSegmentation:
    return VOCSegmentation(root, split, aug=True, **kw)


def _landsat(root: str | Path | None = None, split: str = "train", **kw: Any) -> Dataset:
    from denseloss.data.landsat import LandsatScene

    return LandsatScene(split, root=root, **kw)


def layout_datasets() -> dict[str, Callable[..., Dataset]]:
    """Name → factory ``(root, split, **kw)`` for every on-disk layout and the Landsat scene."""
    return {
        "voc": _voc,
        "voc_aug": _voc_aug,
        "sbd": SBD,
        "cityscapes": Cityscapes,
        "gta5": GTA5,
        "synthia": SynthiaRandCityscapes,
        "ade20k": ADE20K,
        "cocostuff": CocoStuff164k,
        "scribblesup": ScribbleSup,
        "nyuv2": NYUv2,
        "folder": FolderDataset,
        "landsat": _landsat,
    }
