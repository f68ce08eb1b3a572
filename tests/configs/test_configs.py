"""Every shipped paper config parses, resolves on its layout, builds, and (one per group) trains.

The configs are the papers' protocols at full scale (ResNet-101, 321²–1280×720 crops, 20k–120k
steps). Here they run as written except for a documented **test-only shrink** (:func:`shrink`):
reduced network width/depth through the factories' own ``layers``/``width`` (ResNet),
``embed_dim``/``depth``/``num_heads`` (ViT) and ``widths`` (U-Net) keyword arguments, small
discriminator / analyzer / projection widths, 32-pixel crops, 2 steps, no weights file. Every
config is built (data streams + method + network); one config per (layout, method, task) group
trains 2 steps and evaluates with its own evaluation mode.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from denseloss.cli.train import parse_config
from denseloss.config.schema import RunConfig, config_from_dict, config_to_dict
from denseloss.configs import HEADER_KEYS, list_configs, read_header, resolve_config
from denseloss.methods import METHODS
from tests.configs.layouts import BUILDERS

CONFIGS = list_configs()
NAMES = [c.name for c in CONFIGS]

# test-only network shrink per factory (their keyword arguments, documented in models/)
SMALL_MODELS = {
    "deeplabv2_resnet101": {"layers": [1, 1, 1, 1], "width": 8},
    "deeplabv2_resnet101_multi": {"layers": [1, 1, 1, 1], "width": 8},
    "deeplabv3plus_resnet101": {"layers": [1, 1, 1, 1], "width": 8},
    "vit_b16": {"embed_dim": 32, "depth": 4, "num_heads": 2, "decoder_channels": 16},
    "unet": {"widths": [4, 8, 8, 8]},
}
# test-only hyperparameter shrink (widths) and switches that make 2 steps reach every term
SMALL_PARAMS = {
    "ndf": 8,
    "d_kwargs": {"ndf": 8, "n_layers": 2},
    "analyzer_widths": [4, 4, 4, 4, 4],
    "embedding_dim": 8,
    "head_channels": 8,
    "semi_start": 0,
    "warmup_steps": 0,
    "max_views": 2,
    "max_samples": 16,
    "warmup_fraction": 0.0,
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("layouts")
    out = {}
    for name, build in BUILDERS.items():
        folder = base / ("voc" if name in ("voc_aug", "scribblesup") else name)
        if not folder.exists():
            build(folder)
        out[name] = str(folder)
    return out


def argv_for(name: str, roots: dict[str, str]) -> list[str]:
    """The config's own ``run:`` command, with the fixture roots as ``--data.root`` values."""
    config = yaml_config(name)
    argv = ["--config", name, "--data.root", roots[config["data"]["name"]]]
    target = config["data"].get("target") or {}
    if target.get("name"):
        argv += ["--data.target.root", roots[target["name"]]]
    return argv


def yaml_config(name: str) -> dict:
    import yaml

    return yaml.safe_load(resolve_config(name).read_text(encoding="utf-8"))


def _small_pair(value: list[int] | None, size: list[int]) -> list[int] | None:
    return None if value is None else list(size)


def shrink(config: RunConfig, out_dir: Path) -> RunConfig:
    """The test-only shrink of the module docstring; every other value is the config's."""
    d = config_to_dict(config)
    data, target = d["data"], d["data"]["target"]
    small = [32, 40]
    data.update(
        size=32,
        crop=[32, 32] if data["crop"] is not None and data["crop"] != data["resize"] else None,
        batch_size=2,
        eval_batch_size=min(2, data["eval_batch_size"]),
        num_workers=0,
    )
    if data["resize"] is not None:
        data["crop"], data["resize"] = list(small), list(small)
    if target["resize"] is not None:
        target["resize"], target["crop"] = list(small), list(small)
    d["model"]["kwargs"] = {**d["model"]["kwargs"], **SMALL_MODELS[d["model"]["name"]]}
    d["params"] = {k: SMALL_PARAMS.get(k, v) for k, v in d["params"].items()}
    d["eval"]["crop"] = _small_pair(d["eval"]["crop"], [48, 48])
    d["eval"]["stride"] = _small_pair(d["eval"]["stride"], [24, 24])
    d["train"].update(
        steps=2,
        eval_every=1,
        checkpoint_every=0,
        log_every=1,
        progress=False,
        threads=1,
        accelerator="cpu",
        out_dir=str(out_dir),
    )
    return config_from_dict(d)


def group_of(name: str) -> tuple[str, str, str]:
    c = yaml_config(name)
    return (c["data"]["name"], c["method"], c.get("task", "seg"))


REPRESENTATIVES = sorted({group_of(n): n for n in reversed(NAMES)}.values())


def test_configs_cover_every_experiment_of_the_issue() -> None:
    families = {n.split("/")[0] for n in NAMES}
    assert families == {"advsemiseg", "maxsquare", "scribble", "pne", "asm"}
    assert len([n for n in NAMES if n.startswith("advsemiseg/voc-")]) == 11
    assert len([n for n in NAMES if n.startswith("advsemiseg/cityscapes-")]) == 11
    for src in ("gta5", "synthia"):
        for row in ("source_only", "minent", "maxsquare", "maxsquare_iw", "maxsquare_iw_multi"):
            assert f"maxsquare/{src}-{row}" in NAMES
    assert {
        f"scribble/scribblesup-{m}" for m in ("pce", "pce_densecrf", "pce_gatedcrf", "dfr")
    } <= set(NAMES)
    assert {
        f"pne/{d}-{m}" for d in ("cityscapes", "ade20k") for m in ("ce", "pixel_contrast", "pne")
    } <= set(NAMES)
    assert {
        f"asm/{d}-{m}"
        for d in ("voc", "nyuv2_depth", "nyuv2_normals")
        for m in ("ce", "cgan", "asm")
    } <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_header_and_explicit_hyperparameters(name: str) -> None:
    """Every header key is present; every method hyperparameter is written out (no default)."""
    header = read_header(resolve_config(name))
    assert set(header) == set(HEADER_KEYS)
    assert header["paper"]
    assert header["run"].startswith(f"denseloss train --config {name} ")
    config = yaml_config(name)
    fields = (
        {f.name for f in dataclasses.fields(METHODS[config["method"]].Config)}
        if (dataclasses.is_dataclass(METHODS[config["method"]].Config))
        else set()
    )
    assert set(config["params"]) == fields
    assert config["train"]["reference_batch"] == config["data"]["batch_size"]


def test_every_config_resolves_and_builds(roots: dict[str, str], tmp_path: Path) -> None:
    """Parse + validate on the fixture layout, then build data streams, method and network."""
    from denseloss.training.fabric_setup import build_fabric
    from denseloss.training.trainer import Trainer

    fabric = build_fabric(accelerator="cpu", devices=1)
    fabric.launch()
    for k, name in enumerate(NAMES):
        config, _ = parse_config(argv_for(name, roots))
        assert config.train.steps >= 20000
        assert config.eval.original_labels
        trainer = Trainer(fabric, shrink(config, tmp_path / str(k)))
        assert trainer.method.nets, name


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_representative_config_trains_and_evaluates(
    name: str, roots: dict[str, str], tmp_path: Path
) -> None:
    from denseloss.training.trainer import train

    config, _ = parse_config(argv_for(name, roots))
    results = train(shrink(config, tmp_path / "run"))
    run = Path(results["out_dir"])
    assert results["steps"] == 2
    assert results["model"] == "last"
    assert results["best"]["model"] == "best"
    assert results["best"]["step"] in (1, 2)
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "results.md").is_file()
    assert results["eval"]["mode"] == config.eval.mode
    saved = json.loads((run / "results.json").read_text())
    assert saved["best"]["metric"] == results["best"]["metric"]
    if config.task == "seg":
        per_class = results["val"]["iou_per_class"]
        assert len(per_class) == len(results["val"]["iou"])
        for subset in config.eval.class_subsets:
            assert 0.0 <= results["val"][subset] <= 1.0
        assert results["test"] == results["val"]  # test_split = val: scored once
    if METHODS[config.method].regime == "semi":
        labeled = (run / "split" / "labeled.txt").read_text().split("\n")
        assert [i for i in labeled if i and not i.startswith("#")]
