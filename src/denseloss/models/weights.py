"""``--model.weights``: load torchvision / timm / the authors' / denseloss weights into a network.

One loader, :func:`load_weights`, and the key mappings it applies as data (``KEY_MAPPINGS``):

1. **Read** (:func:`read_state_dict`): ``.safetensors`` through the ``safetensors`` package,
   anything else with ``torch.load(weights_only=True)`` (never unpickling code). A denseloss
   trainer checkpoint gives its ``module/segmenter`` (or ``module/regressor``); ``state_dict`` /
   ``model`` containers are unwrapped; a DataParallel ``module.`` prefix is stripped.
2. **Map** the file's names to the network's:
   - the authors' DeepLab-v2 layouts, recognised by their classifier names: AdvSemiSeg's
     ``Res_Deeplab`` (``layer5.conv2d_list.{0..3}`` on layer4; released VOC models, and the
     MS-COCO initialisation, which carries a ``Scale.`` prefix) and AdaptSegNet's / MaxSquare's
     ``DeeplabMulti`` (``layer5`` on layer3, ``layer6`` on layer4), mapped by ``KEY_MAPPINGS``
     onto ``deeplabv2_resnet101`` / ``deeplabv2_resnet101_multi``; their ResNet names are
     torchvision's, so ``conv1``/``bn1``/``layerK`` only gain the ``encoder.`` prefix;
   - **encoder-only** files (torchvision ResNet / MobileNetV2, timm ViT ImageNet checkpoints),
     recognised when more of their keys match ``encoder.<key>`` than ``<key>``: loaded into
     ``net.encoder``; their ImageNet classifier (``IMAGENET_CLASSIFIER_KEYS``) is dropped;
   - anything else (a full segmenter ``state_dict``, a denseloss checkpoint) is taken as is.
3. **Check, strictly by default**: every network key the file should provide must be there with
   the right shape, and no file key may be left over; the error names the file and the first
   missing, unexpected and shape-mismatched keys. Allowed gaps, each logged: the decoder and head
   of an encoder-only file, and classifier tensors trained for another number of classes (they
   keep their initialisation). A ViT position embedding for another grid is resampled.

The authors' networks put the stride of a bottleneck on its first 1×1 conv and use a ceil-mode
max-pool and a classifier that sums only two of its four convs; the weights load into either
variant, but the authors' numbers need a network built with ``reference_code=True`` (a warning
says so).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "IMAGENET_CLASSIFIER_KEYS",
    "KEY_MAPPINGS",
    "LAYOUTS",
    "WeightsReport",
    "load_weights",
    "map_keys",
    "read_state_dict",
]

logger = logging.getLogger("denseloss.models.weights")

# The authors' layouts, recognised by a key only they have (checked in this order).
LAYOUTS: dict[str, str] = {
    "deeplab_multi": r"^(Scale\.)?layer6\.conv2d_list\.",  # AdaptSegNet / MaxSquare DeeplabMulti
    "res_deeplab": r"^(Scale\.)?layer5\.conv2d_list\.",  # AdvSemiSeg Res_Deeplab (+ COCO init)
}

_ENCODER = (r"^(?:Scale\.)?(conv1|bn1|layer[1-4])\.", r"encoder.\1.")

# (file layout, network head) -> ordered (pattern, replacement) renames; the first pattern that
# matches renames the key (``re.sub``, once); None drops it; a key no pattern matches is kept as
# is (and reported as unexpected). Head "single" = deeplabv2_resnet101, "multi" = its _multi.
KEY_MAPPINGS: dict[tuple[str, str], tuple[tuple[str, str | None], ...]] = {
    ("res_deeplab", "single"): (
        (r"^(?:Scale\.)?layer5\.conv2d_list\.", "head.convs."),
        _ENCODER,
    ),
    # MaxSquare's DeeplabMulti(pretrained=True) drops the init's layer5 and keeps the ResNet.
    ("res_deeplab", "multi"): ((r"^(?:Scale\.)?layer5\.", None), _ENCODER),
    ("deeplab_multi", "multi"): (
        (r"^(?:Scale\.)?layer5\.conv2d_list\.", "head.aux.convs."),
        (r"^(?:Scale\.)?layer6\.conv2d_list\.", "head.main.convs."),
        _ENCODER,
    ),
    # Evaluating a DeeplabMulti model through its main (layer4) classifier only.
    ("deeplab_multi", "single"): (
        (r"^(?:Scale\.)?layer5\.", None),
        (r"^(?:Scale\.)?layer6\.conv2d_list\.", "head.convs."),
        _ENCODER,
    ),
}

# ImageNet classifier parts of encoder-only files: torchvision ResNet ``fc``, timm ViT ``head``
# (and ``fc_norm`` of its avg-pool variants), torchvision MobileNetV2 ``classifier`` and its last
# 1×1 conv ``features.18``, which the segmentation encoder does not use.
IMAGENET_CLASSIFIER_KEYS = r"^(fc|head|fc_norm|classifier|features\.18)\."


@dataclass(frozen=True)
class WeightsReport:
    """What :func:`load_weights` did.

    Attributes:
        path: the file.
        layout: ``"full"``, ``"encoder"``, ``"res_deeplab"`` or ``"deeplab_multi"``.
        loaded: number of tensors copied into the network.
        encoder_only: only ``net.encoder`` was loaded.
        kept_init: network keys left at their initialisation (decoder/head, other-class classifier).
        dropped: file keys not used (ImageNet classifier, keys a mapping drops).
        notes: other remarks (resampled position embeddings, reference_code hint).
    """

    path: str
    layout: str
    loaded: int
    encoder_only: bool
    kept_init: tuple[str, ...]
    dropped: tuple[str, ...]
    notes: tuple[str, ...]


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "method" in obj and "format" in obj:  # denseloss checkpoint
        nets = obj["method"]
        for key in ("module/segmenter", "module/regressor"):
            if isinstance(nets, dict) and key in nets:
                return _unwrap(nets[key], path)
        raise ValueError(
            "read_state_dict: a denseloss checkpoint must hold 'module/segmenter' or "
            f"'module/regressor'; got {sorted(nets)} in {path}."
        )
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return _unwrap(obj[key], path)
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            f"read_state_dict: the file must hold a state_dict (name -> tensor); got "
            f"{type(obj).__name__} in {path}."
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"read_state_dict: every value of the state_dict must be a tensor; got "
            f"{type(obj[bad[0]]).__name__} for {bad[0]!r} in {path}."
        )
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` stored in ``path`` (``.pth``/``.pt``/``.ckpt``/``.bin``/``.safetensors``).

    Raises:
        FileNotFoundError: no such file.
        ImportError: a ``.safetensors`` file without the ``safetensors`` package.
        ValueError: the file is not a weights-only checkpoint, or holds no state_dict.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"read_state_dict: path must be an existing file; got {str(p)!r}.")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - safetensors is a dependency
            raise ImportError(
                f"read_state_dict: reading {p} needs the safetensors package. "
                "Hint: pip install safetensors"
            ) from err
        return _unwrap(load_file(str(p), device="cpu"), p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, …
        raise ValueError(
            f"read_state_dict: the file must be a weights-only PyTorch checkpoint (tensors and "
            f"containers, no pickled code); got {p} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})."
        ) from err
    return _unwrap(obj, p)


def map_keys(
    state: dict[str, torch.Tensor], renames: tuple[tuple[str, str | None], ...]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Apply an ordered rename table; return the renamed dict and the dropped keys.

    Example:
        >>> sd = {"Scale.layer5.conv2d_list.1.bias": torch.zeros(2), "Scale.conv1.weight": None}
        >>> out, dropped = map_keys(sd, KEY_MAPPINGS[("res_deeplab", "single")])
        >>> sorted(out), dropped
        (['encoder.conv1.weight', 'head.convs.1.bias'], [])
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        for pattern, repl in renames:
            if re.match(pattern, key):
                if repl is None:
                    dropped.append(key)
                else:
                    out[re.sub(pattern, repl, key, count=1)] = value
                break
        else:
            out[key] = value
    return out, dropped


def _detect(state: dict[str, torch.Tensor]) -> str | None:
    for layout, pattern in LAYOUTS.items():
        if any(re.match(pattern, k) for k in state):
            return layout
    return None


def _to_network_names(
    net: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> tuple[str, dict[str, torch.Tensor], list[str]]:
    layout = _detect(state)
    if layout is not None:
        head = getattr(net, "head", None)
        kind = "multi" if isinstance(head, nn.ModuleDict) else "single"
        mapped, dropped = map_keys(state, KEY_MAPPINGS[(layout, kind)])
        return layout, mapped, dropped
    enc = {k[len("encoder.") :]: k for k in own if k.startswith("encoder.")}
    if len(state.keys() & enc.keys()) <= len(state.keys() & own.keys()):
        return "full", state, []
    mapped, dropped = {}, []
    for key, value in state.items():
        if key in enc:
            mapped[enc[key]] = value
        elif re.match(IMAGENET_CLASSIFIER_KEYS, key):
            dropped.append(key)
        else:
            mapped[f"encoder.{key}"] = value
    return "encoder", mapped, dropped


def _first(keys: list[str], n: int = 3) -> str:
    more = f", … ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(net: nn.Module, path: str | Path, *, strict: bool = True) -> WeightsReport:
    """Load ``path`` into ``net`` (a denseloss segmenter or regressor); see the module docstring.

    Args:
        net: the network (Fabric/DDP wrappers are looked through).
        path: torchvision / timm / the authors' / denseloss weights.
        strict: raise on any missing, unexpected or shape-mismatched key beyond the allowed gaps;
            ``False`` loads whatever fits and logs the rest.

    Returns:
        A :class:`WeightsReport`; a one-line summary is also logged (WARNING for partial loads).

    Raises:
        FileNotFoundError, ImportError: see :func:`read_state_dict`.
        ValueError: the weights do not fit (``strict``); the message names the file and the first
            missing, unexpected and shape-mismatched keys.
    """
    net = getattr(net, "module", net)
    state = read_state_dict(path)
    own = net.state_dict()
    layout, mapped, dropped = _to_network_names(net, state, own)
    notes: list[str] = []
    for prefix, module in net.named_modules():
        if hasattr(module, "adapt_state_dict"):
            notes += module.adapt_state_dict(mapped, f"{prefix}." if prefix else "")
    if layout in LAYOUTS and not getattr(getattr(net, "encoder", None), "reference_code", False):
        notes.append(
            f"{layout} weights in a network built without reference_code=True: the forward "
            "differs from the authors' (pass --model.kwargs '{\"reference_code\": true}' to "
            "reproduce their numbers)"
        )
    num_classes = getattr(net, "num_classes", None)
    unexpected = [k for k in mapped if k not in own]
    mismatched, other_classes = [], []
    for k, v in mapped.items():
        if k in own and v.shape != own[k].shape:
            # a classifier trained for K != C classes: same shape but for the class dimension
            is_classifier = (
                not k.startswith("encoder.")
                and num_classes is not None
                and own[k].ndim >= 1
                and own[k].shape[0] == num_classes
                and v.shape[1:] == own[k].shape[1:]
            )
            (other_classes if is_classifier else mismatched).append(k)
    encoder_only = not any(k in own and not k.startswith("encoder.") for k in mapped)
    kept = [k for k in own if k not in mapped or k in other_classes]
    kept = [k for k in kept if not k.endswith("num_batches_tracked")]
    allowed = set(other_classes)
    if encoder_only:
        allowed |= {k for k in kept if not k.startswith("encoder.")}
    missing = [k for k in kept if k not in allowed]
    if strict and (missing or unexpected or mismatched):
        shapes = [f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in mismatched[:3]]  # fmt: skip
        name = getattr(net, "name", type(net).__name__)
        raise ValueError(
            f"load_weights: the weights in {path} must fit {name} "
            f"(read as layout {layout!r}); got {len(missing)} missing "
            f"[{_first(missing)}], {len(unexpected)} unexpected [{_first(unexpected)}], "
            f"{len(mismatched)} shape-mismatched [{'; '.join(shapes)}]. Hint: check "
            "--model.name and its --model.kwargs (output_stride does not change shapes; layers, "
            "width, embed_dim and num_classes do)."
        )
    load = {k: v for k, v in mapped.items() if k in own and k not in other_classes}
    load = {k: v for k, v in load.items() if v.shape == own[k].shape}
    net.load_state_dict(load, strict=False)
    report = WeightsReport(
        str(path), layout, len(load), encoder_only, tuple(kept), tuple(dropped), tuple(notes)
    )
    _log(report, other_classes, missing, unexpected, mismatched)
    return report


def _log(
    r: WeightsReport,
    other_classes: list[str],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> None:
    parts = [f"load_weights: {r.path} ({r.layout}): loaded {r.loaded} tensors"]
    partial = False
    if r.encoder_only:
        parts.append("the encoder only; the decoder and head keep their initialisation")
        partial = True
    if other_classes:
        parts.append(
            f"classifier for another number of classes kept at init [{_first(other_classes)}]"
        )
        partial = True
    if r.dropped:
        parts.append(f"dropped {len(r.dropped)} file keys [{_first(list(r.dropped))}]")
    for name, keys in (("missing", missing), ("unexpected", unexpected),
                       ("shape-mismatched", mismatched)):  # fmt: skip
        if keys:
            parts.append(f"not strict: {len(keys)} {name} [{_first(keys)}]")
            partial = True
    parts += list(r.notes)
    (logger.warning if partial or r.notes else logger.info)("; ".join(parts) + ".")
