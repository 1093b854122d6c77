"""The detection subcommands: ``detect`` (fine-tune Mask R-CNN from a backbone, report COCO
AP) and ``detection-set`` (build a pasted-object COCO-format set)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

__all__ = ["add_detection_commands"]


def cmd_detect(args: argparse.Namespace) -> int:
    from geoharmony.detection.config import load_detection_config
    from geoharmony.detection.model import load_detection_backbone
    from geoharmony.detection.report import ap_lines
    from geoharmony.detection.train import load_sets, run_detection
    from geoharmony.engine.run_lock import RunLock
    from geoharmony.engine.runtime import setup_runtime
    from geoharmony.eval import write_json

    cfg = load_detection_config(args.config, args.overrides)
    backbone = load_detection_backbone(args.checkpoint)
    sets = load_sets(args.data, cfg, backbone.body.in_channels)
    runtime = setup_runtime(cfg.train)
    out = Path(args.output)
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        unused = backbone.report["unused_tensors"]
        print(
            f"{backbone.report['source']}: {backbone.report['backbone_tensors_loaded']} backbone "
            f"tensors loaded; left unused: {unused or 'none'}"
        )
        print(
            f"{sets.record()['train_images']} training and {len(sets.val)} validation images, "
            f"{sets.num_classes} categories; {cfg.optim.iterations} iterations of "
            f"{cfg.optim.batch_size} images on {runtime.world_size} process(es), {runtime.device}"
        )
    with RunLock(out) if runtime.is_main else contextlib.nullcontext():
        result = run_detection(cfg, backbone, sets, out, runtime, args.stop_after)
        if result is None:
            return 0
        write_json(out / "metrics.json", result)
    for line in ap_lines(result):
        print(line)
    print(f"wrote {out / 'metrics.json'} and {out / 'model.pt'}")
    return 0


def cmd_detection_set(args: argparse.Namespace) -> int:
    from geoharmony.config import ConfigError
    from geoharmony.data.sources import load_source
    from geoharmony.data.splits import ImageArray
    from geoharmony.detection.pasted import PasteSettings, write_pasted_set

    settings = PasteSettings(
        canvas=args.canvas,
        train_images=args.train_images,
        val_images=args.val_images,
        max_objects=args.max_objects,
        min_scale=args.min_scale,
        max_scale=args.max_scale,
        imbalance_ratio=args.imbalance_ratio,
        seed=args.seed,
    )
    if problems := settings.problems():
        raise ConfigError("; ".join(problems))
    train, test = (load_source(args.data_source, args.root, split) for split in (True, False))
    if not isinstance(train, ImageArray) or not isinstance(test, ImageArray):
        raise ConfigError(f"--data-source {args.data_source}: pasting needs an in-memory source")
    summary = write_pasted_set(train, test, args.output, settings)
    for split, info in summary["splits"].items():
        print(
            f"{split}: {info['images']} images, {info['objects']} objects, per class "
            f"{info['objects_per_class']}"
        )
    print(f"wrote {args.output}/annotations/instances_{{train,val}}.json and the images")
    return 0


def add_detection_commands(sub: Any) -> None:
    """Add the detection subcommands to the ``geoharmony`` subparsers ``sub``."""
    from geoharmony.data.catalog import SOURCES

    p = sub.add_parser(
        "detect",
        help="fine-tune Mask R-CNN (FPN) from a backbone on a COCO-format set; COCO AP",
        description="Fine-tune torchvision's Mask R-CNN with a feature pyramid, its backbone "
        "initialised from a geoharmony checkpoint (file or run directory) or a file written by "
        "'geoharmony export', on DATA/annotations/instances_{train,val}.json and the image "
        "folders (train/ or train2017/, ...). Writes DIR/metrics.json (bbox and segm AP, AP50, "
        "AP75, APs, APm, APl) and DIR/model.pt. The defaults are the COCO 1x protocol "
        "(configs/downstream/coco_maskrcnn.yaml, docs/protocol.md); under torchrun the "
        "processes share each batch and BatchNorm is synchronised. Resumable: run the same "
        "command again on the same --output.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint, run directory or export")
    p.add_argument("--data", required=True, help="the COCO-format set's root folder")
    p.add_argument("--output", required=True, help="output directory (resumes if it has a run)")
    p.add_argument("--config", help="preset YAML (default: the COCO 1x protocol)")
    p.add_argument("--stop-after", type=int, metavar="ITERATIONS", help="pause after this many")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="preset overrides (optim.lr=0.01)"
    )
    p.set_defaults(func=cmd_detect)

    # Pasting takes the items' own pixels as their masks: grayscale arrays in memory.
    grayscale = tuple(n for n, src in SOURCES.items() if not src.files and src.channels == 1)
    p = sub.add_parser(
        "detection-set",
        help="a COCO-format detection set of real items pasted on empty canvases",
        description="Paste items of an in-memory source (grayscale: Fashion-MNIST, glyphs) on "
        "empty canvases, 1 to --max-objects each, never overlapping, and write a COCO-format "
        "set (annotations/instances_{train,val}.json, train/ and val/): each object's box and "
        "mask are its own pixels, its class the item's. Training objects come from the "
        "source's training split with class frequencies cut at --imbalance-ratio (ldam "
        "profile); validation objects from its test split, balanced.",
    )
    p.add_argument("--output", required=True, help="the set's root folder")
    p.add_argument("--data-source", choices=grayscale, default="fashion_mnist")
    p.add_argument("--root", help="the source's data folder (default: its own location)")
    p.add_argument("--canvas", type=int, default=96, help="canvas side in pixels (default 96)")
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--val-images", type=int, default=500)
    p.add_argument("--max-objects", type=int, default=4, help="items per canvas, at most")
    p.add_argument("--min-scale", type=float, default=1.0, help="item side / native side")
    p.add_argument("--max-scale", type=float, default=2.0)
    p.add_argument(
        "--imbalance-ratio",
        type=float,
        default=1.0,
        help="training class frequencies (1: balanced)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_detection_set)
