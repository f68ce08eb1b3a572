"""Write tiny data sets in the real on-disk encodings of each layout (nothing binary is committed).

Each ``build_*`` function writes into ``root`` and returns the label maps the loader must produce
(train ids, 255 = ignore), keyed by sample order, so tests compare decoded values exactly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io
from PIL import Image

from denseloss.data.layouts import voc_palette

H, W = 12, 16


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_rgb(path: Path, seed: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = _rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_palette_png(path: Path, ids: np.ndarray, num_colours: int = 256) -> None:
    """A "P" mode PNG: pixel value = class index, VOC colour map as palette."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette([c for rgb in voc_palette(num_colours) for c in rgb])
    image.save(path)


def write_gray_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8), mode="L").save(path)


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes (a corrupt download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _blocks(values: list[int], seed: int) -> np.ndarray:
    """An (H, W) map of 4-pixel runs cycling through all ``values``, shifted by ``seed``."""
    runs = np.arange(H * W).reshape(H, W) // 4
    return np.asarray(values)[(runs + seed) % len(values)]


# --- PASCAL VOC / SBD / ScribbleSup -----------------------------------------------------------


def build_voc(
    root: Path, ids: tuple[str, ...] = ("2007_000001", "2007_000002")
) -> list[np.ndarray]:
    voc = root / "VOCdevkit" / "VOC2012"
    labels = []
    for k, image_id in enumerate(ids):
        write_rgb(voc / "JPEGImages" / f"{image_id}.jpg", k)
        label = _blocks([0, 15, 255, 20, 1], k)
        write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", label)
        aug = np.where(label == 255, 0, label)  # SegmentationClassAug has no border band
        write_palette_png(voc / "SegmentationClassAug" / f"{image_id}.png", aug)
        labels.append(label)
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids) + "\n")
    (sets / "aug.txt").write_text("\n".join(ids) + "\n")
    return labels


def build_sbd(root: Path, ids: tuple[str, ...] = ("2008_000001",)) -> list[np.ndarray]:
    sbd = root / "benchmark_RELEASE" / "dataset"
    labels = []
    for k, image_id in enumerate(ids):
        write_rgb(sbd / "img" / f"{image_id}.jpg", k)
        label = _blocks([0, 3, 7], k).astype(np.uint8)
        (sbd / "cls").mkdir(parents=True, exist_ok=True)
        gt = {
            "Segmentation": label,
            "Boundaries": np.zeros(1),
            "CategoriesPresent": np.unique(label),
        }
        scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": gt})
        labels.append(label.astype(np.int64))
    (sbd / "train.txt").write_text("\n".join(ids) + "\n")
    return labels


def build_scribbles(root: Path, ids: tuple[str, ...] = ("2007_000001", "2007_000002")) -> None:
    """ScribbleSup XML (short tags) and rloss-style PNGs next to a VOC fixture."""
    voc = root / "VOCdevkit" / "VOC2012"
    xml_dir = voc / "scribble_annotation" / "pascal_2012"
    png_dir = voc / "pascal_2012_scribble"
    xml_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        (xml_dir / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>"
            f"<size><width>{W}</width><height>{H}</height></size>"
            "<polygon><tag>plane</tag><point><X>2</X><Y>2</Y></point>"
            "<point><X>12</X><Y>2</Y></point></polygon>"
            "<polygon><tag>monitor</tag><point><X>3</X><Y>9</Y></point>"
            "<point><X>3</X><Y>9</Y></point><point><X>10</X><Y>9</Y></point></polygon>"
            "</annotation>"
        )
        scribble = np.full((H, W), 255, dtype=np.uint8)
        scribble[5, 2:10] = 0
        scribble[8:11, 12] = 18
        write_palette_png(png_dir / f"{image_id}.png", scribble)


# --- Cityscapes / GTA5 / SYNTHIA ----------------------------------------------------------------

# raw labelId → expected trainId pairs: road, sidewalk, unlabeled, bicycle, sky, license plate(-1
# is never stored; 0), pole
CITYSCAPES_RAW = [7, 8, 0, 33, 23, 17]
CITYSCAPES_TRAIN = [0, 1, 255, 18, 10, 5]


def build_cityscapes(root: Path, split: str = "val") -> list[np.ndarray]:
    expected = []
    for k, city in enumerate(("aachen", "bremen")):
        stem = f"{city}_000000_00001{k}"
        write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", k)
        raw = _blocks(CITYSCAPES_RAW, k)
        write_gray_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
        table = dict(zip(CITYSCAPES_RAW, CITYSCAPES_TRAIN))
        expected.append(np.vectorize(table.get)(raw))
    return expected


def build_gta5(root: Path) -> list[np.ndarray]:
    expected = []
    table = dict(zip(CITYSCAPES_RAW, CITYSCAPES_TRAIN))
    for k in range(2):
        write_rgb(root / "images" / f"0000{k + 1}.png", k)
        raw = _blocks(CITYSCAPES_RAW, k)
        write_palette_png(root / "labels" / f"0000{k + 1}.png", raw)
        expected.append(np.vectorize(table.get)(raw))
    return expected


# SYNTHIA raw id → 16-class contiguous id: road 3→0, building 2→2, wall 21→3, pole 7→5,
# sky 1→9, bicycle 11→15, void 0→255, terrain-less id 16 (absent class) → 255
SYNTHIA_RAW = [3, 2, 21, 7, 1, 11, 0, 16]
SYNTHIA_16 = [0, 2, 3, 5, 9, 15, 255, 255]
SYNTHIA_13 = [0, 2, 255, 255, 6, 12, 255, 255]


def write_synthia_label(path: Path, class_ids: np.ndarray, seed: int) -> None:
    """16-bit 3-channel PNG with the class in the first stored (R) channel, instance ids in G."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((*class_ids.shape, 3), dtype=np.uint16)
    rgb[..., 0] = class_ids
    rgb[..., 1] = _rng(seed).integers(100, 4000, class_ids.shape)  # instance ids, > 22
    rgb[..., 2] = 1000 + seed
    cv2.imwrite(str(path), rgb[..., ::-1].copy())  # cv2 writes BGR: reverse so R is stored first


def build_synthia(root: Path) -> list[np.ndarray]:
    raws = []
    for k in range(2):
        name = f"000000{k}.png"
        write_rgb(root / "RGB" / name, k)
        raw = _blocks(SYNTHIA_RAW, k)
        write_synthia_label(root / "GT" / "LABELS" / name, raw, k)
        raws.append(raw)
    return raws


# --- ADE20K / COCO-Stuff ------------------------------------------------------------------------


def build_ade20k(root: Path) -> list[np.ndarray]:
    base = root / "ADEChallengeData2016"
    raws = []
    for k in range(2):
        stem = f"ADE_val_0000000{k + 1}"
        write_rgb(base / "images" / "validation" / f"{stem}.jpg", k)
        raw = _blocks([0, 1, 150, 13], k)
        write_gray_png(base / "annotations" / "validation" / f"{stem}.png", raw)
        raws.append(raw)
    return raws


# stuffthingmaps value → mmsegmentation train id (from clsID_to_trID of coco_stuff164k.py)
COCO_PAIRS = {0: 0, 10: 10, 12: 11, 26: 24, 30: 26, 91: 80, 181: 170, 255: 255}


def build_cocostuff(root: Path) -> list[np.ndarray]:
    raws = []
    for k in range(2):
        stem = f"00000000000{k}"
        write_rgb(root / "images" / "val2017" / f"{stem}.jpg", k)
        raw = _blocks(list(COCO_PAIRS), k)
        write_gray_png(root / "annotations" / "val2017" / f"{stem}.png", raw)
        raws.append(raw)
    return raws


# --- NYUv2 -------------------------------------------------------------------------------------


def build_nyuv2_mtan(root: Path, split: str = "val", count: int = 2) -> list[dict[str, np.ndarray]]:
    out = []
    for k in range(count):
        rng = _rng(k)
        image = rng.random((H, W, 3)).astype(np.float32)
        label = _blocks([-1, 0, 12, 5], k).astype(np.float32)
        depth = rng.uniform(0.5, 9.0, (H, W, 1)).astype(np.float32)
        depth[0, 0, 0] = 0.0
        normal = rng.normal(size=(H, W, 3)).astype(np.float32)
        normal /= np.linalg.norm(normal, axis=2, keepdims=True)
        arrays = {"image": image, "label": label, "depth": depth, "normal": normal}
        for key, value in arrays.items():
            (root / split / key).mkdir(parents=True, exist_ok=True)
            np.save(root / split / key / f"{k}.npy", value)
        out.append(arrays)
    return out


def build_nyud_mt(root: Path) -> list[np.ndarray]:
    raws = []
    for k, image_id in enumerate(("img_5001", "img_5002")):
        write_rgb(root / "images" / f"{image_id}.jpg", k)
        raw = _blocks([0, 1, 40], k).astype(np.uint16)
        for folder in ("segmentation", "depth"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "segmentation" / f"{image_id}.mat", {"segmentation": raw})
        depth = np.full((H, W), 2.5, dtype=np.float32)
        scipy.io.savemat(root / "depth" / f"{image_id}.mat", {"depth": depth})
        normal = np.zeros((H, W, 3), dtype=np.uint8)
        normal[..., 2] = 255  # n = (0, 0, 1) stored as (n + 1) / 2 * 255 -> (127.5, 127.5, 255)
        normal[..., :2] = 128
        (root / "normals").mkdir(parents=True, exist_ok=True)
        Image.fromarray(normal).save(root / "normals" / f"{image_id}.png")
        raws.append(raw.astype(np.int64))
    (root / "gt_sets").mkdir(parents=True, exist_ok=True)
    (root / "gt_sets" / "val.txt").write_text("img_5001\nimg_5002\n")
    return raws


# --- Folder ------------------------------------------------------------------------------------


def build_folder(root: Path, description: str = "yaml") -> list[np.ndarray]:
    text = "classes: [background, road, car]\nignore_index: 99\ndepth_scale: 1000.0\n"
    if description == "yaml":
        (root / "dataset.yaml").parent.mkdir(parents=True, exist_ok=True)
        (root / "dataset.yaml").write_text(text)
    else:
        root.mkdir(parents=True, exist_ok=True)
        (root / "dataset.json").write_text(
            '{"classes": ["background", "road", "car"], "ignore_index": 99, "depth_scale": 1000.0}'
        )
    labels = []
    for k, stem in enumerate(("scene_a", "scene_b")):
        write_rgb(root / "images" / f"{stem}.png", k)
        raw = _blocks([0, 1, 2, 99], k)
        write_gray_png(root / "labels" / f"{stem}.png", raw)
        scribble = np.full((H, W), 99, dtype=np.uint8)
        scribble[4, 3:9] = 2
        write_gray_png(root / "scribbles" / f"{stem}.png", scribble)
        (root / "depth").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "depth" / f"{stem}.png"), np.full((H, W), 1500, dtype=np.uint16))
        labels.append(np.where(raw == 99, 255, raw))
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "val.txt").write_text("scene_b\n")
    return labels


def build_regime_folder(
    root: Path,
    *,
    colour: tuple[int, int, int],
    splits: dict[str, int] | None = None,
    classes: tuple[str, ...] = ("background", "road", "car"),
    labels: bool | set[str] = True,
    scribbles: bool = True,
    depth: bool = False,
    normals: bool = False,
    size: tuple[int, int] = (H, W),
) -> dict[str, list[str]]:
    """A ``folder`` data set for every regime: images of one flat ``colour`` (plus noise).

    The colour identifies the data set a batch came from (UDA source vs target tests). Stems are
    ``<split>_<k>``; ``splits/<split>.txt`` lists them. ``labels`` may be a set of stems: only
    those get a label file (semi-supervision by label files). Depth is a 16-bit PNG in mm
    (``depth_scale: 1000``), normals an RGB PNG ``(n + 1) / 2 · 255``.

    Returns:
        ``{split: [stems]}``.
    """
    splits = splits or {"train": 6, "val": 2, "test": 3}
    root.mkdir(parents=True, exist_ok=True)
    if labels or scribbles:
        (root / "dataset.yaml").write_text(
            f"classes: [{', '.join(classes)}]\nignore_index: 255\ndepth_scale: 1000.0\n"
        )
    (root / "splits").mkdir(exist_ok=True)
    out: dict[str, list[str]] = {}
    rng = _rng(len(str(root)))
    for split, count in splits.items():
        stems = [f"{split}_{k}" for k in range(count)]
        out[split] = stems
        (root / "splits" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for k, stem in enumerate(stems):
            pixels = np.empty((*size, 3), dtype=np.uint8)
            pixels[:] = colour
            pixels = np.clip(pixels + rng.integers(-3, 4, pixels.shape), 0, 255).astype(np.uint8)
            (root / "images").mkdir(exist_ok=True)
            Image.fromarray(pixels).save(root / "images" / f"{stem}.png")
            runs = np.arange(size[0] * size[1]).reshape(size) // 8
            label = ((runs + k) % len(classes)).astype(np.uint8)
            label[0, :2] = 255
            if labels is True or (isinstance(labels, set) and stem in labels):
                write_gray_png(root / "labels" / f"{stem}.png", label)
            if scribbles:
                scribble = np.full(size, 255, dtype=np.uint8)
                scribble[size[0] // 2, :] = label[size[0] // 2, :]
                write_gray_png(root / "scribbles" / f"{stem}.png", scribble)
            if depth:
                (root / "depth").mkdir(exist_ok=True)
                mm = (1000 + 100 * runs % 4000).astype(np.uint16)
                cv2.imwrite(str(root / "depth" / f"{stem}.png"), mm)
            if normals:
                (root / "normals").mkdir(exist_ok=True)
                normal = np.zeros((*size, 3), dtype=np.uint8)
                normal[..., 2] = 255
                normal[..., :2] = 128
                Image.fromarray(normal).save(root / "normals" / f"{stem}.png")
    return out
