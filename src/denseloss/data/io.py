"""Readers for the on-disk encodings of dense-prediction data sets, with validation.

Every reader takes a path, raises ``FileNotFoundError`` when it does not exist and
:class:`~denseloss.data.errors.DataError` (naming the file) when it cannot be decoded or holds
values that do not fit the encoding. The readers return NumPy arrays; :func:`image_to_tensor` and
:func:`label_to_tensor` turn them into the sample conventions of ``denseloss.data.sample``.

Encodings covered:

* JPEG / 8-bit RGB PNG images (Pillow, converted to RGB);
* palette ("P") or grayscale label PNGs, read as **indices** (never converted to RGB);
* 16-bit multi-channel PNGs (SYNTHIA ``GT/LABELS``) read unchanged with OpenCV (Pillow cannot);
* MATLAB ``.mat`` files: v5 through ``scipy.io.loadmat``, v7.3 (HDF5) through ``h5py`` (arrays
  come back transposed, as MATLAB stores them column-major);
* ``.npy`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from denseloss.data.errors import DataError

__all__ = [
    "check_label_values",
    "check_same_size",
    "image_to_tensor",
    "label_to_tensor",
    "map_ids",
    "read_image",
    "read_index_png",
    "read_mat",
    "read_npy",
    "read_png_unchanged",
    "require_file",
]


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a :class:`Path`, raising ``FileNotFoundError`` if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _open_pillow(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()  # decode now so truncated files fail here, not later
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode image ({error}).") from error
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read a JPEG/PNG/TIFF photograph as RGB.

    Args:
        path: image file.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the bytes cannot be decoded (truncated or not an image).
    """
    path = require_file(path, "image")
    image = _open_pillow(path)
    if image.mode not in ("RGB", "L", "P", "RGBA", "CMYK", "YCbCr", "LA"):
        raise DataError(f"{path}: image must be 8-bit colour or gray; got mode {image.mode!r}.")
    return np.asarray(image.convert("RGB"))


def read_index_png(path: str | Path) -> np.ndarray:
    """Read a label PNG whose pixel values are class indices (palette "P", "L" or 16-bit gray).

    The palette is ignored: a palette PNG's pixel value *is* the class id (PASCAL VOC, GTA5).

    Args:
        path: label file.

    Returns:
        ``(H, W)`` integer array (uint8, or int32 for 16-bit grayscale).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file is corrupt, a JPEG (lossy: class ids change), or a colour (RGB)
            image rather than an index map.
    """
    path = require_file(path, "label")
    image = _open_pillow(path)
    if image.format == "JPEG":
        raise DataError(
            f"{path}: label must be stored losslessly (PNG, BMP or TIFF); got a JPEG, whose "
            "compression changes class ids at region borders. Hint: export the labels as PNG."
        )
    if image.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(image)
    raise DataError(
        f"{path}: label must be a palette ('P') or single-channel index PNG; got mode "
        f"{image.mode!r}. Hint: colour-coded label images are for display only; use the index "
        "(labelIds / SegmentationClass) files."
    )


def read_png_unchanged(path: str | Path) -> np.ndarray:
    """Read a PNG with all its channels and bit depth (``cv2.IMREAD_UNCHANGED``).

    OpenCV returns colour channels in **BGR(A)** order: for a 3- or 4-channel file the first
    stored (R) channel is ``array[:, :, 2]``.

    Args:
        path: PNG file (8- or 16-bit, 1-4 channels).

    Returns:
        ``(H, W)`` or ``(H, W, C)`` uint8/uint16 array, channels in BGR(A) order.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: OpenCV cannot decode the file.
    """
    import cv2

    path = require_file(path, "label")
    data = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise DataError(f"{path}: cannot decode PNG with OpenCV (corrupt or truncated file).")
    # libpng may decode a truncated file partially without an error; Pillow verifies the CRCs
    # and the end of the image data, so use it as the integrity check.
    try:
        with Image.open(path) as probe:
            probe.verify()
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: corrupt or truncated PNG ({error}).") from error
    return array


def read_mat(path: str | Path, key: str) -> np.ndarray:
    """Read one array from a MATLAB file; ``key`` may name a struct field (``GTcls.Segmentation``).

    MATLAB v5 files are read with ``scipy.io.loadmat``; v7.3 files (HDF5) with ``h5py``, whose
    arrays are the transpose of the MATLAB array (column-major storage): they are transposed back.

    Args:
        path: ``.mat`` file.
        key: variable name, optionally followed by ``.field`` for a struct.

    Returns:
        The array.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file cannot be read or lacks ``key``.
    """
    import scipy.io

    path = require_file(path, ".mat file")
    names = key.split(".")
    try:
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        return _read_mat_hdf5(path, names)
    except (ValueError, OSError, TypeError) as error:
        raise DataError(f"{path}: cannot read MATLAB file ({error}).") from error
    if names[0] not in content:
        raise DataError(f"{path}: MATLAB file has no variable {names[0]!r}; has {_keys(content)}.")
    value = content[names[0]]
    for field in names[1:]:
        if not hasattr(value, field):
            raise DataError(f"{path}: MATLAB struct {names[0]!r} has no field {field!r}.")
        value = getattr(value, field)
    return np.asarray(value)


def _keys(content: dict) -> list[str]:
    return sorted(k for k in content if not k.startswith("__"))


def _read_mat_hdf5(path: Path, names: Sequence[str]) -> np.ndarray:
    try:
        import h5py
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py"
        ) from error
    try:
        with h5py.File(path, "r") as handle:
            node = handle
            for name in names:
                if name not in node:
                    raise DataError(f"{path}: HDF5 MATLAB file has no entry {'/'.join(names)!r}.")
                node = node[name]
            return np.asarray(node).T
    except OSError as error:
        raise DataError(f"{path}: cannot read MATLAB v7.3 file ({error}).") from error


def read_npy(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` array (no pickles).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file is not a valid ``.npy`` array.
    """
    path = require_file(path, ".npy file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read .npy array ({error}).") from error


def map_ids(ids: np.ndarray, table: np.ndarray, path: Path | str, *, what: str) -> np.ndarray:
    """Map raw ids through a lookup table; ids outside the table raise :class:`DataError`.

    Args:
        ids: integer array of raw ids.
        table: 1-D int64 lookup table; entries equal to ``-1`` mark ids that must not occur.
        path: the file the ids came from (for the message).
        what: name of the encoding, e.g. ``"Cityscapes labelIds"``.

    Returns:
        ``table[ids]`` as int64.
    """
    ids = np.asarray(ids).astype(np.int64)
    bad = (ids < 0) | (ids >= len(table))
    if not bad.any():
        mapped = table[ids]
        bad = mapped < 0
        if not bad.any():
            return mapped
    values = np.unique(ids[bad])[:10].tolist()
    raise DataError(
        f"{path}: {what} contains values {values} that the encoding does not define. "
        "Hint: check that this is the right label file for this dataset."
    )


def check_label_values(
    label: np.ndarray, num_classes: int, ignore_index: int, path: Path | str
) -> None:
    """Raise :class:`DataError` unless values are in ``[0, num_classes)`` or ``ignore_index``."""
    bad = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    if bad.any():
        values = np.unique(label[bad])[:10].tolist()
        raise DataError(
            f"{path}: label values must be in [0, {num_classes}) or equal ignore_index="
            f"{ignore_index}; got {values}. Hint: check the dataset's class mapping."
        )


def check_same_size(
    image: np.ndarray, other: np.ndarray, image_path: Path | str, other_path: Path | str
) -> None:
    """Raise :class:`DataError` unless ``other`` has the image's height and width."""
    if tuple(image.shape[:2]) != tuple(other.shape[:2]):
        raise DataError(
            f"{other_path}: size must equal the image's {tuple(image.shape[:2])} (H, W) of "
            f"{image_path}; got {tuple(other.shape[:2])}."
        )


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def label_to_tensor(label: np.ndarray) -> torch.Tensor:
    """``(H, W)`` integer array → ``(H, W)`` int64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
