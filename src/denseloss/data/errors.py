"""The one data-specific exception: a file that exists but cannot be used as stored."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A corrupt, truncated or inconsistent image/label file.

    Raised by the readers in ``denseloss.data.io`` and by every layout loader. The message names
    the file and what is wrong with it (undecodable bytes, label values outside
    ``[0, C) ∪ {ignore}``, label size different from the image size, ...). A *missing* file raises
    ``FileNotFoundError`` instead.
    """
