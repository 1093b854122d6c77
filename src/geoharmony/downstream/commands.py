"""The downstream subcommands: ``finetune``, ``probe``, ``export``, ``embed``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_downstream_commands", "add_file_source_arguments", "check_file_source_arguments"]


def _summary(title: str, result: dict[str, Any]) -> None:
    from geoharmony.eval.probes import probe_lines

    print(f"{title}: accuracy {result['accuracy']:.2f}")
    for line in probe_lines(result):
        print(f"  {line}")


def cmd_finetune(args: argparse.Namespace) -> int:
    import torch

    from geoharmony.data.build import build_run_data
    from geoharmony.downstream.backbone import ArchitectureError, load_backbone
    from geoharmony.downstream.finetune import FinetuneSettings, finetune
    from geoharmony.downstream.images import resolve_device
    from geoharmony.eval import write_json
    from geoharmony.pretrained import preflight_cache_of

    pb = load_backbone(args.checkpoint, args.overrides)
    if pb.cfg.train.threads is not None:
        torch.set_num_threads(pb.cfg.train.threads)
    device = resolve_device(args.device or pb.cfg.train.device)
    data = build_run_data(pb.cfg.data, preflight_cache_of(pb.path))
    if data.in_channels != pb.in_channels:
        raise ArchitectureError(
            f"{pb.path}: the backbone takes {pb.in_channels}-channel images but "
            f"{data.name} has {data.in_channels} channels"
        )
    settings = FinetuneSettings(
        mode=args.mode,
        loss=args.loss,
        tau=args.tau,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        seed=args.seed,
        progress=pb.cfg.train.progress and not args.no_progress,
    )
    result, state = finetune(pb, data, settings, device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result)
    torch.save(state, out / "model.pt")
    _summary(f"finetune {args.mode}, {args.loss}", result)
    print(f"wrote {out / 'metrics.json'} and {out / 'model.pt'}")
    return 0


def add_file_source_arguments(
    p: argparse.ArgumentParser, required: bool = True, every_source: bool = False
) -> None:
    """``--data-source``, ``--root``, ``--train-list``, ``--test-list``. The sources offered are
    the file sources (``folder``, ``list``), or with ``every_source`` every source of the
    catalog; then ``--root`` may be left out for a source with a default location."""
    from geoharmony.data.catalog import SOURCES
    from geoharmony.downstream.transfer import TRANSFER_SOURCES

    kind = {"required": True} if required else {"default": "folder"}
    choices = tuple(SOURCES) if every_source else TRANSFER_SOURCES
    p.add_argument("--data-source", choices=choices, **kind)
    where = "image folder, root of listed paths, or data folder"
    if every_source:
        where += " (default: the source's own location, e.g. Debian's Fashion-MNIST)"
    p.add_argument("--root", required=not every_source, help=where)
    p.add_argument("--train-list", help="list source: training list file")
    p.add_argument("--test-list", help="list source: test list file")


def check_file_source_arguments(args: argparse.Namespace) -> None:
    """A list source names both its list files."""
    from geoharmony.config import ConfigError

    if args.data_source == "list" and (args.train_list is None or args.test_list is None):
        raise ConfigError("--data-source list needs --train-list and --test-list")


def cmd_probe(args: argparse.Namespace) -> int:
    from geoharmony.downstream.transfer import transfer_probe
    from geoharmony.eval import write_json

    check_file_source_arguments(args)
    result = transfer_probe(
        args.checkpoint,
        args.data_source,
        args.root,
        train_list=args.train_list,
        test_list=args.test_list,
        preset=args.preset,
        epochs=args.epochs,
        shots=args.shots,
        group_rule=args.group_rule,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        overrides=args.overrides,
    )
    out = Path(args.output)
    write_json(out / "metrics.json", result)
    _summary(f"transfer probe ({args.preset})", result)
    print(f"wrote {out / 'metrics.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from geoharmony.config import ConfigError
    from geoharmony.downstream.export import export_backbone, sidecar_path

    output = Path(args.output)
    if output.suffix in (".json", ".safetensors"):
        raise ConfigError(
            f"--output {output}: give the torch file (e.g. backbone.pt); the sidecar is "
            "FILE.json and safetensors goes to --safetensors"
        )
    record = export_backbone(
        args.checkpoint,
        output,
        args.safetensors,
        expect=args.expect,
        require_torchvision=args.require_torchvision,
    )
    arch = record["architecture"]
    status = "loads strictly" if arch["torchvision_compatible"] else "needs changes to load"
    print(
        f"{arch['backbone']} (width {arch['width']:g}, {arch['stem']} stem, "
        f"{arch['in_channels']}-channel input, {arch['feature_dim']}-d features): "
        f"torchvision {arch['torchvision_name'] or '-'} {status}"
    )
    print("load with:\n  " + record["load_with"].replace("\n", "\n  "))
    written = ", ".join(record["files"].values())
    print(f"wrote {written} and {sidecar_path(output)}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from geoharmony.config import ConfigError
    from geoharmony.downstream.embed import EMBED_SUFFIXES, embed_folder

    if Path(args.output).suffix not in EMBED_SUFFIXES:
        raise ConfigError(f"--output {args.output} must end with .npy or .safetensors")
    record = embed_folder(
        args.checkpoint,
        args.images,
        args.output,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        overrides=args.overrides,
        skip_bad_files=args.skip_bad_files,
    )
    n, d = record["shape"]
    sidecar = Path(args.output).with_suffix(".json")
    print(f"{n} images -> {d}-d features: wrote {args.output} and {sidecar} (paths)")
    if record["unreadable"]:
        print(f"left out {len(record['unreadable'])} unreadable files, listed in {sidecar}")
    return 0


def _common(p: argparse.ArgumentParser, workers: bool = True) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    if workers:
        p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
        p.add_argument("--workers", type=int, default=2, help="image-decoding processes")


def add_downstream_commands(sub: Any) -> None:
    """Add the downstream subcommands to the ``geoharmony`` subparsers ``sub``."""
    p = sub.add_parser(
        "finetune",
        help="supervised long-tailed training from a checkpoint (logit adjustment or CE)",
        description="Train a classifier on the run's labelled long-tailed pretraining set, "
        "starting from the checkpoint's backbone, and write DIR/metrics.json (balanced test "
        "set, Many/Med/Few/Std/Avg) and DIR/model.pt. Not resumable: a run is short.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--mode", choices=("linear", "full"), default="linear")
    p.add_argument("--loss", choices=("la", "ce"), default="la", help="la: logit-adjusted CE")
    p.add_argument("--tau", type=float, default=1.0, help="logit-adjustment strength")
    p.add_argument("--epochs", type=int, help="default: 200 linear, 30 full")
    p.add_argument("--lr", type=float, help="default: 1e-2 (Adam) linear, 0.05 (SGD) full")
    p.add_argument("--batch-size", type=int, help="default: 256 linear, 128 full")
    p.add_argument("--weight-decay", type=float, help="default: 5e-6 linear, 5e-4 full")
    p.add_argument("--seed", type=int, help="default: the stored train.seed")
    p.add_argument("--device", help="default: the stored train.device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="stored-config overrides (data.root=)"
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "probe",
        help="linear probe of a checkpoint on another labelled image set (transfer)",
        description="Frozen-backbone linear probe on an image folder (ROOT/train and "
        "ROOT/test or ROOT/val, one sub-folder per class) or OLTR list files; writes "
        "DIR/metrics.json.",
    )
    _common(p)
    add_file_source_arguments(p)
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--preset", choices=("adam", "sgd"), default="adam", help="probe preset")
    p.add_argument("--epochs", type=int, help="probe epochs (default: the preset's)")
    p.add_argument("--shots", type=int, help="labelled images per class (default: all)")
    p.add_argument("--group-rule", choices=("thirds", "thresholds"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="stored-config overrides")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "export",
        help="write the backbone as a torchvision-layout ResNet state dict",
        description="Write the backbone's state dict (no 'backbone.' prefix, no fc) with "
        "torch.save, optionally as safetensors, and FILE.json describing the architecture. "
        "An ImageNet-stem width-1 3-channel ResNet-18/50 loads strictly into torchvision's "
        "resnet18/resnet50 with fc = nn.Identity(); other variants are exported with a "
        "warning and the needed changes in FILE.json.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--output", required=True, help="FILE.pt")
    p.add_argument("--safetensors", metavar="FILE.safetensors", help="also write safetensors")
    p.add_argument(
        "--expect",
        choices=("resnet18", "resnet50", "cifar_resnet18"),
        help="fail unless the checkpoint holds this backbone",
    )
    p.add_argument(
        "--require-torchvision",
        action="store_true",
        help="fail (instead of warning) unless it loads into an unmodified torchvision model",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "embed",
        help="backbone features of every image of a folder",
        description="Features of every image under DIR (recursive, sorted) to FILE.npy or "
        "FILE.safetensors; FILE.json lists the image paths in row order.",
    )
    _common(p)
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--output", required=True, help="FILE.npy or FILE.safetensors")
    p.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave unreadable files out (listed in FILE.json) instead of stopping",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="stored-config overrides")
    p.set_defaults(func=cmd_embed)
