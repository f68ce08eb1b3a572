"""``denseloss eval --run <dir> [--split val|test] [--data.* ...] [--eval.* ...] [--out dir]``.

Scores a run's checkpoint on its own evaluation data (the target for UDA runs), or, with
``--data.*`` flags, on another data set of the same classes, for cross-domain testing::

    denseloss eval --run runs/x --split test                                # the run's own data
    denseloss eval --run runs/x --split test --data.name folder --data.root /data/real
    denseloss eval --run runs/x --data.domain real                          # built-in, other domain

A new ``--data.name`` starts from that data set's defaults; otherwise the flags given replace
those of the run's evaluation data set. ``--eval.*`` flags replace fields of the run's test-time
protocol (by default a run is scored as it was during training), e.g. the papers' multi-scale,
flipped evaluation of a model trained with whole-image validation::

    denseloss eval --run runs/x --split test --eval.mode multiscale \
        --eval.scales 0.75 1.0 1.25 --eval.flip true

Results go to ``<run>/eval/eval_<split>[-<data set>][-<protocol>].json`` with overlay PNGs next
to them.
"""

from __future__ import annotations

import json
from typing import Any

from denseloss.cli.app import CliParser

__all__ = ["main"]

# flag -> (DataSource field, type, help)
_DATA_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--data.name": ("name", str, "data set (a key of DATASETS) to evaluate on instead"),
    "--data.root": ("root", str, "its root on disk"),
    "--data.domain": ("domain", str, "built-in data: synthetic or real"),
    "--data.kwargs": ("kwargs", json.loads, "JSON keyword arguments of the data set"),
    "--data.val_split": ("val_split", str, "split name evaluated as val"),
    "--data.test_split": ("test_split", str, "split name evaluated as test"),
    "--data.val_length": ("val_length", int, "at most this many val samples"),
    "--data.test_length": ("test_length", int, "at most this many test samples"),
}


def _bool(text: str) -> bool:
    """``true``/``false`` (as ``denseloss train``'s flags take them)."""
    value = {"true": True, "false": False}.get(text.lower())
    if value is None:
        raise ValueError(text)
    return value


_bool.__name__ = "true/false"  # argparse names the expected type in its error with this


def _add_eval_flags(parser: CliParser) -> None:
    group = parser.add_argument_group("test-time protocol (EvalConfig fields; default: the run's)")
    group.add_argument("--eval.mode", dest="eval_mode", choices=["whole", "slide", "multiscale"])
    group.add_argument(
        "--eval.crop", dest="eval_crop", type=int, nargs=2, metavar=("H", "W"),
        help="whole: pad up to H W; slide: the window",
    )  # fmt: skip
    group.add_argument(
        "--eval.stride", dest="eval_stride", type=int, nargs=2, metavar=("H", "W"),
        help="slide: the window step (default 2/3 of the crop)",
    )  # fmt: skip
    group.add_argument(
        "--eval.scales", dest="eval_scales", type=float, nargs="+", metavar="S",
        help="multiscale: image scales whose probabilities average",
    )  # fmt: skip
    group.add_argument("--eval.flip", dest="eval_flip", type=_bool, metavar="true|false")
    group.add_argument(
        "--eval.original_labels", dest="eval_original_labels", type=_bool, metavar="true|false",
        help="score against labels at their file's resolution",
    )  # fmt: skip


def _protocol(args: Any) -> dict[str, Any]:
    fields = ("mode", "crop", "stride", "scales", "flip", "original_labels")
    out = {f: getattr(args, f"eval_{f}") for f in fields if getattr(args, f"eval_{f}") is not None}
    for f in ("crop", "stride", "scales"):
        if f in out:
            out[f] = tuple(out[f])
    return out


def main(argv: list[str]) -> int:
    """Entry point of ``denseloss eval``: prints the metrics as JSON, writes overlays."""
    parser = CliParser(prog="denseloss eval", description=__doc__)
    parser.add_argument("--run", help="run directory (config.yaml + checkpoints/last.ckpt)")
    parser.add_argument("--checkpoint", help="checkpoint file (default: the run's last.ckpt)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--out", help="directory for eval_<split>.json and PNGs (<run>/eval)")
    parser.add_argument("--batches", type=int, default=None, help="evaluate at most N batches")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda", "auto"])
    for flag, (dest, kind, text) in _DATA_FLAGS.items():
        parser.add_argument(flag, dest=f"data_{dest}", type=kind, default=None, help=text)
    parser.add_argument(
        "--data.resize", dest="resize", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="resize samples to H W (default: the run's data.resize)",
    )  # fmt: skip
    _add_eval_flags(parser)
    args = parser.parse_args(argv)
    if args.run is None and args.checkpoint is None:
        parser.error("one of --run or --checkpoint is required")
    data = {
        dest: getattr(args, f"data_{dest}")
        for dest, _, _ in _DATA_FLAGS.values()
        if getattr(args, f"data_{dest}") is not None
    }
    from denseloss.training.evaluation import evaluate_run

    result = evaluate_run(
        args.run,
        checkpoint=args.checkpoint,
        split=args.split,
        out=args.out,
        max_batches=args.batches,
        accelerator=args.accelerator,
        data=data or None,
        resize=tuple(args.resize) if args.resize else None,
        protocol=_protocol(args) or None,
    )
    print(json.dumps(result, indent=2))
    return 0
