"""Input checks shared by the networks (SMP ``check_input_shape`` style messages)."""

from __future__ import annotations

import torch

from denseloss._validation import check_float_tensor

__all__ = ["check_image", "check_int_tuple", "check_positive_int"]


def check_image(func: str, image: object, multiple: int, *, channels: int = 3) -> torch.Tensor:
    """Check an image batch and that its size is a multiple of the network's stride.

    Args:
        func: name used in the message.
        image: the input; must be a (N, ``channels``, H, W) floating-point tensor.
        multiple: H and W must be multiples of this number.
        channels: required number of channels.

    Returns:
        The image, narrowed to ``torch.Tensor`` for type checkers.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: wrong rank or channel count, or H/W not multiples of ``multiple`` (the message
            names the padded size that would work).
    """
    check_float_tensor(func, "image", image, 4)
    if not isinstance(image, torch.Tensor):  # pragma: no cover - check_float_tensor raised
        raise TypeError(f"{func}: image must be a torch.Tensor; got {type(image).__name__}.")
    if image.shape[1] != channels:
        raise ValueError(
            f"{func}: image must have {channels} channels (N, {channels}, H, W); got shape "
            f"{tuple(image.shape)}."
        )
    h, w = image.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        ph = max(multiple, -(-h // multiple) * multiple)
        pw = max(multiple, -(-w // multiple) * multiple)
        raise ValueError(
            f"{func}: image height and width must be multiples of {multiple}; got {h}×{w}. "
            f"Hint: pad to {ph}×{pw} (e.g. torch.nn.functional.pad) or crop to a multiple of "
            f"{multiple}."
        )
    return image


def check_positive_int(func: str, name: str, value: object) -> int:
    """``value`` must be an ``int`` > 0 (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{func}: {name} must be an int; got {type(value).__name__}.")
    if value <= 0:
        raise ValueError(f"{func}: {name} must be > 0; got {value}.")
    return value


def check_int_tuple(func: str, name: str, value: object, length: int | None = None) -> tuple:
    """``value`` must be a non-empty sequence of positive ints (of ``length`` when given)."""
    if not isinstance(value, (tuple, list)) or len(value) == 0:
        raise TypeError(f"{func}: {name} must be a non-empty tuple of ints; got {value!r}.")
    if length is not None and len(value) != length:
        raise ValueError(f"{func}: {name} must have {length} entries; got {len(value)}.")
    for v in value:
        check_positive_int(func, name, v)
    return tuple(value)
