"""Joint transforms on sample dicts (image, label, scribble, depth, normal, valid).

Every transform is called as ``t(sample, generator)`` and returns a new dict; the input tensors are
never modified in place (data sets may cache them). Random transforms draw only from the
``torch.Generator`` they are given, never from the global RNG, so augmentation is reproducible
from a seed whatever the number of DataLoader workers (see :class:`denseloss.data.Augmented`).

Resampling rules: the image is interpolated bilinearly; ``label``, ``scribble``, ``depth``,
``normal`` and ``valid`` take the nearest pixel (no blending across classes, no invented
depths), and normals are re-normalised to unit length afterwards. Keys that are not spatial
(``index``, ...) pass through. Depth is not rescaled with the image (the convention of the MTL
loaders, e.g. ``lorenmt/mtan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import torch
import torch.nn.functional as F

from denseloss.data.sample import IGNORE_INDEX, Sample

__all__ = [
    "ColorJitter",
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "Transform",
    "resize",
]

_NEAREST_KEYS: Final[tuple[str, ...]] = ("label", "scribble", "depth", "normal", "valid")
_SPATIAL_KEYS: Final[tuple[str, ...]] = ("image", *_NEAREST_KEYS)


def _check_generator(func: str, generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{func}: generator must be a torch.Generator; got {type(generator).__name__}. "
            "Hint: pass torch.Generator().manual_seed(seed) so augmentation is reproducible."
        )
    return generator


def _check_sample(func: str, sample: object) -> Sample:
    if not isinstance(sample, dict):
        raise TypeError(f"{func}: sample must be a dict of tensors; got {type(sample).__name__}.")
    if "image" not in sample:
        raise ValueError(f"{func}: sample must have an 'image' key; got keys {sorted(sample)}.")
    image = sample["image"]
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or not image.is_floating_point():
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{func}: sample['image'] must be a (3, H, W) float tensor; got {got}.")
    return sample


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _renormalise(normal: torch.Tensor) -> torch.Tensor:
    norm = normal.norm(dim=0, keepdim=True)
    return torch.where(norm > 0, normal / norm.clamp_min(1e-12), torch.zeros_like(normal))


class Transform:
    """Base of the joint transforms: ``__call__(sample, generator) -> sample``."""

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same generator.

    Example:
        >>> t = Compose([RandomHorizontalFlip(p=1.0)])
        >>> s = {"image": torch.arange(2.0).view(1, 1, 2).expand(3, 1, 2)}
        >>> t(s, torch.Generator().manual_seed(0))["image"][0]
        tensor([[1., 0.]])
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(
                    f"Compose: transforms[{i}] must be callable; got {type(t).__name__}."
                )
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample


class RandomScale(Transform):
    """Resize by a factor drawn uniformly from ``[min_scale, max_scale]``.

    Args:
        min_scale: smallest factor (> 0).
        max_scale: largest factor (>= ``min_scale``).
    """

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(
                f"RandomScale: min_scale, max_scale must satisfy 0 < min_scale <= max_scale; "
                f"got {min_scale!r}, {max_scale!r}."
            )
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        sample = _check_sample("RandomScale", sample)
        scale = _uniform(_check_generator("RandomScale", generator), self.min_scale, self.max_scale)
        h, w = sample["image"].shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return resize(sample, size)


def resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize every spatial entry of ``sample`` to ``size`` = (H, W) with the module's rules."""
    out = dict(sample)
    # bilinear weights are convex, so an image in [0, 1] stays in [0, 1]
    out["image"] = F.interpolate(
        sample["image"][None], size=size, mode="bilinear", align_corners=False
    )[0]
    for key in _NEAREST_KEYS:
        if key not in sample:
            continue
        x = sample[key]
        batched = x[None, None] if x.ndim == 2 else x[None]
        y = F.interpolate(batched.float(), size=size, mode="nearest")[0]
        y = y[0] if x.ndim == 2 else y
        if key == "normal":
            y = _renormalise(y)
        out[key] = y.to(x.dtype)
    return out


class RandomCrop(Transform):
    """Crop a random ``size`` window, padding bottom/right first where the sample is smaller.

    Padding gives ``image`` 0, ``label``/``scribble`` ``pad_label``, ``depth`` 0 (invalid),
    ``normal`` 0 (invalid) and ``valid`` False; a missing ``valid`` is created (all True) so the
    padding is always recorded.

    Args:
        size: output ``(H, W)`` or an int for a square.
        pad_label: label value written on padding (the ignore index).
    """

    def __init__(self, size: int | tuple[int, int], pad_label: int = IGNORE_INDEX) -> None:
        if isinstance(size, int):
            size = (size, size)
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"RandomCrop: size must be a positive int or (H, W); got {size!r}.")
        self.size = (int(size[0]), int(size[1]))
        self.pad_label = int(pad_label)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        sample = _check_sample("RandomCrop", sample)
        generator = _check_generator("RandomCrop", generator)
        h, w = sample["image"].shape[-2:]
        th, tw = self.size
        out = dict(sample)
        if "valid" not in out:
            out["valid"] = torch.ones(h, w, dtype=torch.bool)
        pad_h, pad_w = max(th - h, 0), max(tw - w, 0)
        if pad_h or pad_w:
            fill = {"image": 0.0, "label": self.pad_label, "scribble": self.pad_label,
                    "depth": 0.0, "normal": 0.0, "valid": False}  # fmt: skip
            for key, value in fill.items():
                if key in out:
                    x = out[key]
                    out[key] = F.pad(x[None] if x.ndim == 2 else x, (0, pad_w, 0, pad_h),
                                     value=value)  # fmt: skip
                    out[key] = out[key][0] if x.ndim == 2 else out[key]
            h, w = h + pad_h, w + pad_w
        top = int(torch.randint(0, h - th + 1, (), generator=generator))
        left = int(torch.randint(0, w - tw + 1, (), generator=generator))
        for key in _SPATIAL_KEYS:
            if key in out:
                out[key] = out[key][..., top : top + th, left : left + tw]
        return out


class RandomHorizontalFlip(Transform):
    """Mirror left-right with probability ``p``; the normal's x component changes sign."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1]; got {p!r}.")
        self.p = float(p)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        sample = _check_sample("RandomHorizontalFlip", sample)
        draw = float(torch.rand((), generator=_check_generator("RandomHorizontalFlip", generator)))
        if draw >= self.p:
            return dict(sample)
        out = dict(sample)
        for key in _SPATIAL_KEYS:
            if key in out:
                out[key] = out[key].flip(-1)
        if "normal" in out:
            # a mirrored surface faces the mirrored way: n_x -> -n_x (NYUv2 loaders do the same)
            sign = torch.tensor([-1.0, 1.0, 1.0], dtype=out["normal"].dtype).view(3, 1, 1)
            out["normal"] = out["normal"] * sign
        return out


class ColorJitter(Transform):
    """Random brightness, contrast and saturation factors in ``[1 - x, 1 + x]`` (image only).

    Applied in that fixed order; the result is clamped to [0, 1].
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0):
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if not 0 <= value < 1:
                raise ValueError(f"ColorJitter: {name} must be in [0, 1); got {value!r}.")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        sample = _check_sample("ColorJitter", sample)
        generator = _check_generator("ColorJitter", generator)
        b = _uniform(generator, 1 - self.brightness, 1 + self.brightness)
        c = _uniform(generator, 1 - self.contrast, 1 + self.contrast)
        s = _uniform(generator, 1 - self.saturation, 1 + self.saturation)
        image = sample["image"]
        if self.brightness:
            image = image * b
        if self.contrast:
            image = (image - _grey(image).mean()) * c + _grey(image).mean()
        if self.saturation:
            grey = _grey(image)
            image = (image - grey) * s + grey
        return {**sample, "image": image.clamp(0, 1)}


def _grey(image: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (1, H, W)."""
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]


class Normalize(Transform):
    """``(image - mean) / std`` per channel. Optional: denseloss models normalise internally."""

    def __init__(
        self,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(
                f"Normalize: mean, std must be 3 values with std > 0; got {mean!r}, {std!r}."
            )
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        sample = _check_sample("Normalize", sample)
        image = sample["image"]
        mean = torch.tensor(self.mean, dtype=image.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype).view(3, 1, 1)
        return {**sample, "image": (image - mean) / std}
