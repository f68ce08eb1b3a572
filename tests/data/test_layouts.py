"""Layout loaders on fixtures written in each data set's real on-disk encoding."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from denseloss.data.errors import DataError
from denseloss.data.io import read_png_unchanged
from denseloss.data.layouts import (
    ADE20K,
    COCO_STUFF_ID_TO_TRAIN,
    COCO_STUFF_UNUSED_IDS,
    GTA5,
    SBD,
    Cityscapes,
    CocoStuff164k,
    FolderDataset,
    NYUv2,
    ScribbleSup,
    SynthiaRandCityscapes,
    VOCSegmentation,
    layout_datasets,
    rasterize_scribbles,
)
from tests.data import fixtures_builder as fb

LABELME_VOC = Path(
    "/usr/share/doc/labelme-examples/examples/semantic_segmentation/data_dataset_voc"
)


def _check_sample(sample: dict[str, torch.Tensor], dataset: object) -> None:
    image, label = sample["image"], sample["label"]
    assert image.dtype == torch.float32
    assert image.shape[0] == 3
    assert 0.0 <= image.min() <= image.max() <= 1.0
    assert label.dtype == torch.int64
    assert label.shape == image.shape[1:]
    assert sample["valid"].dtype == torch.bool
    assert sample["valid"].shape == label.shape
    values = label[label != 255]
    assert values.numel() == 0 or int(values.max()) < dataset.num_classes
    assert len(dataset.class_names) == dataset.num_classes == len(dataset.palette)
    assert dataset.ignore_index == 255


# --- PASCAL VOC, SBD ---------------------------------------------------------------------------


def test_voc_palette_png_read_as_indices(tmp_path):
    expected = fb.build_voc(tmp_path)
    dataset = VOCSegmentation(tmp_path, "train")
    assert len(dataset) == 2
    for k, sample in enumerate(dataset):
        _check_sample(sample, dataset)
        np.testing.assert_array_equal(sample["label"].numpy(), expected[k])
        assert int(sample["index"]) == k
    assert {0, 1, 15, 20, 255} == set(np.unique(expected[0]).tolist())


def test_voc_aug_reads_segmentation_class_aug_via_aug_txt(tmp_path):
    expected = fb.build_voc(tmp_path)
    dataset = layout_datasets()["voc_aug"](tmp_path, "trainaug")
    label = dataset[0]["label"].numpy()
    np.testing.assert_array_equal(label, np.where(expected[0] == 255, 0, expected[0]))
    assert 255 not in label


def test_sbd_mat_ground_truth(tmp_path):
    expected = fb.build_sbd(tmp_path)
    dataset = SBD(tmp_path, "train")
    np.testing.assert_array_equal(dataset[0]["label"].numpy(), expected[0])
    _check_sample(dataset[0], dataset)


def test_voc_aug_falls_back_to_sbd_mat(tmp_path):
    fb.build_voc(tmp_path, ids=("2008_000001",))
    expected = fb.build_sbd(tmp_path / "sbd")
    os.remove(tmp_path / "VOCdevkit/VOC2012/SegmentationClassAug/2008_000001.png")
    (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/aug.txt").write_text("2008_000001\n")
    dataset = VOCSegmentation(tmp_path, "trainaug", aug=True, sbd_root=tmp_path / "sbd")
    np.testing.assert_array_equal(dataset[0]["label"].numpy(), expected[0])


@pytest.mark.skipif(not LABELME_VOC.is_dir(), reason="apt-get install labelme-examples")
def test_voc_on_real_labelme_examples(tmp_path):
    """Three real VOC 2011 images with 21-class palette masks (Debian labelme-examples)."""
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    os.symlink(LABELME_VOC / "JPEGImages", voc / "JPEGImages")
    os.symlink(LABELME_VOC / "SegmentationClassPNG", voc / "SegmentationClass")
    ids = sorted(p.stem for p in (LABELME_VOC / "JPEGImages").glob("*.jpg"))
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids))
    dataset = VOCSegmentation(tmp_path, "train")
    assert len(dataset) == 3
    found = set()
    for k, sample in enumerate(dataset):
        _check_sample(sample, dataset)
        # labelme also writes the class map as .npy with -1 for void: an independent decoding
        reference = np.load(LABELME_VOC / "SegmentationClass" / f"{ids[k]}.npy")
        np.testing.assert_array_equal(
            sample["label"].numpy(), np.where(reference < 0, 255, reference)
        )
        found |= set(sample["label"].unique().tolist())
    # person (15), bus (6), car (7), cat? -- the masks hold these VOC classes and void borders
    assert {0, 15, 255} <= found
    assert dataset.class_names[15] == "person"


# --- Cityscapes, GTA5, SYNTHIA -----------------------------------------------------------------


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    expected = fb.build_cityscapes(tmp_path, "val")
    dataset = Cityscapes(tmp_path, "val")
    assert dataset.num_classes == 19
    for k, sample in enumerate(dataset):
        _check_sample(sample, dataset)
        np.testing.assert_array_equal(sample["label"].numpy(), expected[k])


def test_cityscapes_prefers_label_train_ids(tmp_path):
    fb.build_cityscapes(tmp_path, "val")
    folder = tmp_path / "gtFine/val/aachen"
    train_ids = np.full((fb.H, fb.W), 4, dtype=np.uint8)
    fb.write_gray_png(folder / "aachen_000000_000010_gtFine_labelTrainIds.png", train_ids)
    assert (Cityscapes(tmp_path, "val")[0]["label"] == 4).all()


def test_cityscapes_16_and_13_class_subsets(tmp_path):
    expected = fb.build_cityscapes(tmp_path, "val")[0]
    # pole (trainId 5) is id 5 of 16 and dropped from 13; sky (10) is 9 of 16 and 6 of 13
    label16 = Cityscapes(tmp_path, "val", classes=16)[0]["label"].numpy()
    label13 = Cityscapes(tmp_path, "val", classes=13)[0]["label"].numpy()
    np.testing.assert_array_equal(label16[expected == 5], 5)
    np.testing.assert_array_equal(label13[expected == 5], 255)
    np.testing.assert_array_equal(label16[expected == 10], 9)
    np.testing.assert_array_equal(label13[expected == 10], 6)


def test_gta5_palette_label_ids(tmp_path):
    expected = fb.build_gta5(tmp_path)
    dataset = GTA5(tmp_path, "all")
    for k, sample in enumerate(dataset):
        np.testing.assert_array_equal(sample["label"].numpy(), expected[k])


def test_synthia_class_is_first_stored_channel(tmp_path):
    raws = fb.build_synthia(tmp_path)
    stored = read_png_unchanged(tmp_path / "GT/LABELS/0000000.png")
    assert stored.dtype == np.uint16
    assert stored.shape == (fb.H, fb.W, 3)
    np.testing.assert_array_equal(stored[:, :, 2], raws[0])  # BGR: R is index 2
    for classes, targets in ((16, fb.SYNTHIA_16), (13, fb.SYNTHIA_13)):
        dataset = SynthiaRandCityscapes(tmp_path, "all", classes=classes)
        assert dataset.num_classes == classes
        table = dict(zip(fb.SYNTHIA_RAW, targets))
        for k, sample in enumerate(dataset):
            _check_sample(sample, dataset)
            np.testing.assert_array_equal(sample["label"].numpy(), np.vectorize(table.get)(raws[k]))
    names13 = SynthiaRandCityscapes(tmp_path, classes=13).class_names
    assert not {"wall", "fence", "pole"} & set(names13)


def test_synthia_rejects_8bit_colour_labels(tmp_path):
    fb.build_synthia(tmp_path)
    fb.write_rgb(tmp_path / "GT/LABELS/0000001.png", 3)  # a GT/COLOR-like 8-bit file
    with pytest.raises(DataError, match=r"0000001\.png.*16-bit"):
        SynthiaRandCityscapes(tmp_path)[1]


# --- ADE20K, COCO-Stuff ------------------------------------------------------------------------


def test_ade20k_reduce_zero_label(tmp_path):
    raws = fb.build_ade20k(tmp_path)
    dataset = ADE20K(tmp_path, "val")
    assert dataset.num_classes == 150
    label = dataset[0]["label"].numpy()
    np.testing.assert_array_equal(label, np.where(raws[0] == 0, 255, raws[0] - 1))
    assert {255, 0, 149, 12} == set(np.unique(label).tolist())


def test_cocostuff_mapping_matches_mmseg_converter(tmp_path):
    assert len(COCO_STUFF_ID_TO_TRAIN) == 171
    assert not set(COCO_STUFF_UNUSED_IDS) & set(COCO_STUFF_ID_TO_TRAIN)
    raws = fb.build_cocostuff(tmp_path)
    dataset = CocoStuff164k(tmp_path, "val")
    assert dataset.num_classes == len(dataset.class_names) == 171
    for k, sample in enumerate(dataset):
        np.testing.assert_array_equal(
            sample["label"].numpy(), np.vectorize(fb.COCO_PAIRS.get)(raws[k])
        )
    assert dataset.class_names[11] == "stop sign"
    assert dataset.class_names[80] == "banner"
    assert dataset.class_names[170] == "wood"


def test_cocostuff_unused_id_is_an_error(tmp_path):
    fb.build_cocostuff(tmp_path)
    fb.write_gray_png(tmp_path / "annotations/val2017/000000000001.png", np.full((fb.H, fb.W), 11))
    with pytest.raises(DataError, match=r"000000000001\.png.*\[11\]"):
        CocoStuff164k(tmp_path, "val")[1]


# --- ScribbleSup -------------------------------------------------------------------------------


def test_scribblesup_xml_rasterised_with_stroke_width(tmp_path):
    fb.build_voc(tmp_path)
    fb.build_scribbles(tmp_path)
    thin = ScribbleSup(tmp_path, "train", form="xml", stroke_width=1)[0]["scribble"].numpy()
    thick = ScribbleSup(tmp_path, "train", form="xml", stroke_width=3)[0]["scribble"].numpy()
    np.testing.assert_array_equal(thin[2, 2:13], 1)  # plane → aeroplane
    np.testing.assert_array_equal(thin[9, 3:11], 20)  # monitor → tvmonitor
    assert (thin == 1).sum() == 11
    assert (thin != 255).sum() < (thick != 255).sum()
    np.testing.assert_array_equal(thick[1:4, 4], 1)  # 3 px wide across the stroke
    assert thick[0, 4] == 255


def test_scribblesup_png_and_dense_label(tmp_path):
    expected = fb.build_voc(tmp_path)
    fb.build_scribbles(tmp_path)
    dataset = ScribbleSup(tmp_path, "train", form="png")
    sample = dataset[0]
    scribble = sample["scribble"].numpy()
    assert set(np.unique(scribble).tolist()) == {0, 18, 255}
    # SegmentationClassAug is preferred for the dense label (no void band)
    np.testing.assert_array_equal(
        sample["label"].numpy(), np.where(expected[0] == 255, 0, expected[0])
    )


def test_scribblesup_without_masks_omits_label(tmp_path):
    fb.build_voc(tmp_path)
    fb.build_scribbles(tmp_path)
    for folder in ("SegmentationClass", "SegmentationClassAug"):
        os.remove(tmp_path / "VOCdevkit/VOC2012" / folder / "2007_000002.png")
    sample = ScribbleSup(tmp_path, "train")[0]
    assert "label" not in sample
    assert "scribble" in sample


def test_scribble_unknown_tag(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text(
        "<annotation><size><width>4</width><height>4</height></size>"
        "<polygon><tag>zebra</tag><point><X>1</X><Y>1</Y></point></polygon></annotation>"
    )
    with pytest.raises(DataError, match=r"x\.xml.*'zebra'"):
        rasterize_scribbles(path)


# --- NYUv2 -------------------------------------------------------------------------------------


def test_nyuv2_mtan_npy(tmp_path):
    arrays = fb.build_nyuv2_mtan(tmp_path, "val")
    dataset = NYUv2(tmp_path, "test")  # alias of val
    assert dataset.num_classes == 13
    for k, sample in enumerate(dataset):
        _check_sample(sample, dataset)
        reference = arrays[k]
        np.testing.assert_allclose(sample["image"].numpy(), reference["image"].transpose(2, 0, 1))
        label = reference["label"].astype(np.int64)
        np.testing.assert_array_equal(sample["label"].numpy(), np.where(label == -1, 255, label))
        assert sample["depth"].shape == (1, fb.H, fb.W)
        assert float(sample["depth"][0, 0, 0]) == 0.0
        np.testing.assert_allclose(sample["normal"].numpy(), reference["normal"].transpose(2, 0, 1))


def test_nyuv2_mtan_label_out_of_range(tmp_path):
    fb.build_nyuv2_mtan(tmp_path, "train")
    np.save(tmp_path / "train/label/1.npy", np.full((fb.H, fb.W), 13.0, dtype=np.float32))
    with pytest.raises(DataError, match=r"1\.npy.*\[0, 13\).*\[13\]"):
        NYUv2(tmp_path, "train")[1]


def test_nyud_mt_layout(tmp_path):
    raws = fb.build_nyud_mt(tmp_path)
    # the builder writes normals as PNG; NYUD_MT names them .jpg: rename keeps bytes lossless
    for path in (tmp_path / "normals").glob("*.png"):
        path.rename(path.with_suffix(".jpg"))
    dataset = NYUv2(tmp_path, "val", layout="nyud_mt")
    assert dataset.num_classes == 40
    sample = dataset[0]
    np.testing.assert_array_equal(sample["label"].numpy(), np.where(raws[0] == 0, 255, raws[0] - 1))
    np.testing.assert_allclose(sample["depth"].numpy(), 2.5)
    np.testing.assert_allclose(sample["normal"][2].numpy(), 1.0)
    np.testing.assert_allclose(sample["normal"][0].numpy(), 128 / 255 * 2 - 1, atol=1e-6)


# --- Folder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("description", ["yaml", "json"])
def test_folder_dataset(tmp_path, description):
    expected = fb.build_folder(tmp_path, description)
    dataset = FolderDataset(tmp_path, "all")
    assert dataset.class_names == ("background", "road", "car")
    assert len(dataset) == 2
    sample = dataset[1]
    _check_sample(sample, dataset)
    np.testing.assert_array_equal(sample["label"].numpy(), expected[1])  # 99 → 255
    assert set(sample["scribble"].unique().tolist()) == {2, 255}
    np.testing.assert_allclose(sample["depth"].numpy(), 1.5)
    val = FolderDataset(tmp_path, "val")
    assert len(val) == 1
    np.testing.assert_array_equal(val[0]["label"].numpy(), expected[1])


def test_folder_missing_split_list(tmp_path):
    fb.build_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"splits/test\.txt"):
        FolderDataset(tmp_path, "test")


# --- Errors shared by every loader --------------------------------------------------------------


def test_label_out_of_range_names_file(tmp_path):
    fb.build_voc(tmp_path)
    bad = np.full((fb.H, fb.W), 23)
    fb.write_palette_png(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000002.png", bad)
    dataset = VOCSegmentation(tmp_path, "train")
    dataset[0]
    with pytest.raises(
        DataError, match=r"2007_000002\.png: label values must be in \[0, 21\).*\[23\]"
    ):
        dataset[1]


def test_size_mismatch_names_file(tmp_path):
    fb.build_cityscapes(tmp_path, "val")
    path = tmp_path / "gtFine/val/bremen/bremen_000000_000011_gtFine_labelIds.png"
    fb.write_gray_png(path, np.full((fb.H, fb.W + 2), 7))
    with pytest.raises(DataError, match=re.escape(str(path)) + r": size must equal"):
        Cityscapes(tmp_path, "val")[1]


VOC_LABEL = "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png"
VOC_IMAGE = "VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg"
ADE_LABEL = "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"


@pytest.mark.parametrize(
    ("builder", "factory", "relative"),
    [
        (fb.build_voc, lambda r: VOCSegmentation(r, "train"), VOC_LABEL),
        (fb.build_voc, lambda r: VOCSegmentation(r, "train"), VOC_IMAGE),
        (fb.build_synthia, lambda r: SynthiaRandCityscapes(r), "GT/LABELS/0000000.png"),
        (fb.build_gta5, lambda r: GTA5(r), "labels/00001.png"),
        (fb.build_ade20k, lambda r: ADE20K(r, "val"), ADE_LABEL),
    ],
)  # fmt: skip
def test_truncated_file_is_data_error(tmp_path, builder, factory, relative):
    builder(tmp_path)
    fb.truncate(tmp_path / relative)
    dataset = factory(tmp_path)
    with pytest.raises(DataError, match=re.escape(Path(relative).name)):
        dataset[0]


def test_corrupt_mat_is_data_error(tmp_path):
    fb.build_sbd(tmp_path)
    fb.truncate(tmp_path / "benchmark_RELEASE/dataset/cls/2008_000001.mat", 0.3)
    with pytest.raises(DataError, match=r"2008_000001\.mat"):
        SBD(tmp_path, "train")[0]


def test_missing_files_and_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Expected layout: VOCdevkit/VOC2012"):
        VOCSegmentation(tmp_path / "nowhere", "train")
    fb.build_voc(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Segmentation/val\.txt"):
        VOCSegmentation(tmp_path, "val")
    os.remove(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000002.png")
    with pytest.raises(FileNotFoundError, match=r"SegmentationClass/2007_000002\.png"):
        VOCSegmentation(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/train"):
        Cityscapes(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"dataset\.yaml"):
        FolderDataset(tmp_path, "all")


def test_registry_names():
    names = set(layout_datasets())
    assert {
        "voc", "voc_aug", "cityscapes", "gta5", "synthia", "ade20k", "cocostuff", "scribblesup",
        "nyuv2", "folder", "landsat",
    } <= names  # fmt: skip


def test_registry_factories_build(tmp_path):
    fb.build_cityscapes(tmp_path / "cs", "val")
    fb.build_nyuv2_mtan(tmp_path / "nyu", "train")
    factories = layout_datasets()
    assert len(factories["cityscapes"](tmp_path / "cs", "val")) == 2
    assert len(factories["nyuv2"](tmp_path / "nyu", "train")) == 2
