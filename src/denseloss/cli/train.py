"""``denseloss train``: the command line derived from ``RunConfig`` (jsonargparse).

Examples::

    denseloss train --method maxsquare --train.steps 300 --data.size 64 \
        --params '{"lambda_target": 0.1}'
    denseloss train --resume runs/x                          # continue a run with its own config
    denseloss train --method ce --print-config > run.yaml    # then: --config run.yaml
    denseloss train --config advsemiseg/voc-1_8-advsemi --data.root /data/VOCdevkit  # a paper's

``--resume RUN`` (or ``--train.resume RUN`` without ``--config``) starts from the run's own
``config.yaml`` (or, failing that, the config inside its checkpoint); flags after it override
that config, and the trainer refuses overrides that change hyperparameters unless
``--train.allow_config_change true`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

from denseloss.config.schema import RunConfig, config_from_dict, config_to_dict, validate

__all__ = ["build_parser", "main", "parse_config"]


def build_parser() -> Any:
    """A jsonargparse parser whose flags are :class:`RunConfig`'s fields (``--train.steps``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="denseloss train",
        description="Train a method. Flags mirror denseloss.config.schema.RunConfig.",
        default_env=False,
        exit_on_error=False,
        print_config=None,  # one print flag: --print-config below
    )
    parser.add_argument("--config", action="config", help="YAML written by --print-config")
    parser.add_argument(
        "--resume",
        dest="resume_run",
        default=None,
        help="run directory (or .ckpt) to continue with the run's own config",
    )
    parser.add_class_arguments(RunConfig, nested_key=None, fail_untyped=False)
    parser.add_argument(
        "--print-config",
        dest="print_resolved",
        action="store_true",
        help="print the resolved config as YAML and exit",
    )
    from denseloss.methods import METHODS

    method = parser._option_string_actions.get("--method")
    if method is not None:
        method.help = f"one of: {', '.join(sorted(METHODS))} (`denseloss list` shows defaults)"
    return parser


def _one_line(error: BaseException) -> str:
    """jsonargparse's multi-line message as one line naming the flag (``--train.steps``)."""
    text = " ".join(str(error).split())
    text = re.sub(r'Parser key "([^"]+)":', r"--\1:", text)
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    text = text.replace("typing.Literal", "one of ").replace("Expected a ", "expected ")
    return text[:400]


def _resume_argv(argv: list[str]) -> list[str]:
    """Put the resumed run's config first when resuming without ``--config`` (module docstring)."""
    run = None
    for i, arg in enumerate(argv):
        for flag in ("--resume", "--train.resume"):
            if arg == flag and i + 1 < len(argv):
                run = argv[i + 1]
            elif arg.startswith(flag + "="):
                run = arg.split("=", 1)[1]
    has_config = any(a == "--config" or a.startswith("--config=") for a in argv)
    if run is None or has_config:
        return argv
    from denseloss.training.checkpoint import read_checkpoint_config

    path = Path(run)
    yaml_path = path / "config.yaml" if path.is_dir() else path.parent.parent / "config.yaml"
    if not yaml_path.is_file():  # no config.yaml next to it: the checkpoint's own config
        import yaml

        saved, _ = read_checkpoint_config(path)
        # jsonargparse reads a --config value that is not a path as the YAML text itself
        text = yaml.safe_dump(config_to_dict(config_from_dict(saved)), sort_keys=False)
        return ["--config", text, *argv]
    return ["--config", str(yaml_path), *argv]


def _installed_configs(argv: list[str]) -> list[str]:
    """``--config NAME`` of an installed paper protocol → its path; ``--data.split_file`` → the
    field it is spelled as in the config (``data.labeled_list``, which reads split files)."""
    from denseloss.configs import resolve_config

    out = []
    for i, arg in enumerate(argv):
        if arg == "--data.split_file" or arg.startswith("--data.split_file="):
            arg = arg.replace("--data.split_file", "--data.labeled_list", 1)
        elif arg.startswith("--config="):
            arg = "--config=" + str(resolve_config(arg.split("=", 1)[1]))
        elif i > 0 and argv[i - 1] == "--config":
            arg = str(resolve_config(arg))
        out.append(arg)
    return out


def parse_config(argv: list[str]) -> tuple[RunConfig, bool]:
    """Parse ``argv`` into a validated :class:`RunConfig`; also return whether to print it.

    ``--config`` takes a YAML file or the name of an installed paper protocol
    (``denseloss list --configs``, ``denseloss.configs``).

    Raises:
        ValueError: a parse error (unknown flag, bad value, missing ``--config`` file), as one
            line naming the flag; or a config that :func:`validate` refuses.
        FileNotFoundError: a ``--config`` that is neither a file nor an installed name.
    """
    argv = _resume_argv(_installed_configs(list(argv)))
    try:
        ns = build_parser().parse_args(argv).as_dict()
    except argparse.ArgumentError as error:
        text = _one_line(error)
        configs = [a.split("=", 1)[-1] for a in argv if a.startswith("--config=")]
        configs += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
        if configs and not text.startswith("--"):  # a problem inside the YAML file
            text = f"--config {configs[-1]}: {text}"
        if text.startswith("--data.resize"):
            text += " Hint: --data.resize [H, W]."
        raise ValueError(text) from None
    ns.pop("config", None)
    ns.pop("__path__", None)
    resume_run = ns.pop("resume_run", None)
    if resume_run is not None:
        ns["train"]["resume"] = resume_run
    print_resolved = bool(ns.pop("print_resolved", False))
    config = config_from_dict(ns)
    return validate(config), print_resolved


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss train``."""
    import yaml

    config, print_resolved = parse_config(argv)
    if print_resolved:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    from denseloss.training.trainer import train

    results = train(config)
    summary = {k: results[k] for k in ("out_dir", "steps", "images_per_s") if k in results}
    for split in ("val", "test"):
        metrics = results.get(split, {})
        summary[split] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    best = results.get("best") or {}
    if best:  # the best-val checkpoint, labelled as such (results.md has both tables)
        summary["best_val"] = {k: best.get(k) for k in ("step", "metric", "value", "checkpoint")}
    # under torchrun / srun every process returns here: one summary, from global rank 0
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        print(json.dumps(summary, indent=2))
    return 0
