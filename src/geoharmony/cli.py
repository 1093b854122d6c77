"""The ``geoharmony`` command line: pretrain, evaluate, compare, inspect."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    from geoharmony.config import Config
    from geoharmony.data.build import RunData
    from geoharmony.engine.runtime import Runtime

__all__ = ["main"]

log = logging.getLogger("geoharmony")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _print_unlabeled(result: dict) -> None:
    f, c = result["features"], result["clusters"]
    print(
        f"no labels, so no accuracy: {f['images']} images, {f['dim']}-d features, effective rank "
        f"{f['effective_rank']:.1f} (centred {f['effective_rank_centred']:.1f}), "
        f"{f['dead_dims']} dead dimensions, uniformity {f['uniformity']:.3f}"
    )
    print(
        f"{c['clusters']} k-means clusters of {c['sampled_images']} images: sizes "
        f"{c['sizes'][0]} to {c['sizes'][-1]} (ratio {c['imbalance_ratio']:.3g}, "
        f"{c['effective_clusters']:.2f} effective), {c['neighbour_agreement']:.0%} of the "
        f"{c['neighbours']} nearest neighbours in the own cluster"
    )
    prior = result.get("prior")
    if prior is not None:
        print(
            f"GH prior: {prior['effective_anchors']:.2f} effective anchors of "
            f"{len(prior['estimated'])}, largest share {prior['max_share']:.3f}"
        )


def _print_summary(result: dict) -> None:
    from geoharmony.eval.probes import probe_lines, upgrade_metrics

    if "probes" not in upgrade_metrics(result):  # unlabeled
        _print_unlabeled(result)
        return
    for line in probe_lines(result):
        print(line)


def _run_data(cfg: Config, out: Path, runtime: Runtime) -> RunData:
    """The run's data, its files checked once: rank 0 first (writing the preflight cache in the
    run folder), then the other ranks, which read its verdicts. Rank 0 tells the others whether
    it succeeded, so that its error (e.g. unreadable files) stops them instead of leaving them
    waiting."""
    from geoharmony import parallel
    from geoharmony.config import ConfigError
    from geoharmony.data.build import build_run_data
    from geoharmony.data.preflight import PREFLIGHT_CACHE, write_bad_files

    def build() -> RunData:
        return build_run_data(
            cfg.data, out / PREFLIGHT_CACHE, cfg.train.progress and runtime.is_main
        )

    if not runtime.is_main:
        failure = parallel.broadcast_object(None)
        if failure is not None:
            raise ConfigError(f"rank 0 could not prepare the data: {failure}")
        return build()
    try:
        data = build()
    except Exception as err:
        parallel.broadcast_object(str(err) or type(err).__name__)
        raise
    parallel.broadcast_object(None)
    listing = out / "bad_files.txt"
    if data.bad_files:
        write_bad_files(listing, data.bad_files)
        log.warning(
            "left out %d unreadable image files (data.skip_bad_files=true), listed in %s",
            len(data.bad_files),
            listing,
        )
    else:
        listing.unlink(missing_ok=True)
    return data


def cmd_pretrain(args: argparse.Namespace) -> int:
    from geoharmony.config import to_dict
    from geoharmony.configure import load_config
    from geoharmony.engine.evaluate import evaluate_method
    from geoharmony.engine.runtime import resolve_precision, setup_runtime
    from geoharmony.engine.size_checks import check_sizes
    from geoharmony.engine.trainer import Trainer
    from geoharmony.eval import write_json

    cfg = load_config(args.config, args.overrides)
    out = Path(args.output)
    runtime = setup_runtime(cfg.train)
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(to_dict(cfg)))
    data = _run_data(cfg, out, runtime)
    check_sizes(cfg, data, runtime.world_size, evaluate=not args.no_eval)
    precision = resolve_precision(cfg.train.precision, runtime.device)
    if runtime.is_main:
        log.info(
            "%s: %d pretraining images, class counts %s; %s on %s",
            data.name,
            len(data.pretrain_indices),
            data.class_counts if data.labelled else "none (unlabeled)",
            precision,
            runtime.device,
        )
    trainer = Trainer(cfg, data, out, runtime, args.resume, args.init_from, args.stop_after)
    method = trainer.fit()
    if trainer.state.epoch < cfg.optim.epochs:
        log.info("paused after epoch %d; rerun the same command to continue", trainer.state.epoch)
        return 0
    if args.no_eval:
        return 0
    result = evaluate_method(method, cfg, data, runtime.device)
    if not runtime.is_main:
        return 0
    result["train_seconds"] = sum(h.get("seconds", 0.0) for h in trainer.state.history)
    result["history"] = trainer.state.history
    result["precision"] = precision  # train.precision as run (``auto`` resolved)
    write_json(out / "metrics.json", result)
    _print_summary(result)
    print(f"wrote {out / 'metrics.json'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from geoharmony.engine.evaluate import evaluate_method
    from geoharmony.eval import write_json
    from geoharmony.pretrained import load_pretrained

    # Overrides (e.g. eval.probe=sgd, data.root=...) apply on top of the stored config.
    device = torch.device(args.device)
    run = load_pretrained(args.checkpoint, args.overrides, device)
    result = evaluate_method(run.method, run.cfg, run.data, device)
    output = Path(args.output) if args.output else run.path.parent.parent / "metrics.json"
    write_json(output, result)
    _print_summary(result)
    print(f"wrote {output}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from geoharmony.config import ConfigError
    from geoharmony.detection.report import is_detection
    from geoharmony.eval.compare import load_results, plot_per_class, table_csv, table_markdown
    from geoharmony.methods import display_name

    if args.study and not args.reference:
        raise ConfigError("--study gives the reading's noise levels, which need --reference")
    results = load_results(args.runs, display_name=display_name)
    if any(is_detection(r) for r in results):
        return _compare_detection(results, args)
    unlabeled = [r["_path"] for r in results if "probes" not in r]
    if unlabeled:
        raise ConfigError(
            f"{', '.join(unlabeled)}: runs on unlabeled images have no accuracy to compare; "
            "their metrics.json holds the feature statistics and the kNN-cluster summary"
        )
    markdown = table_markdown(results)
    prefix = Path(args.output)
    written = [f"{prefix}.md", f"{prefix}.csv", f"{prefix}_per_class.png"]
    if args.reference:
        markdown += "\n\n" + _compare_reference(results, args, prefix)
        written += [f"{prefix}_deficit.csv", f"{prefix}_deficit.json", f"{prefix}_deficit.png"]
    print(markdown)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.md").write_text(markdown + "\n")
    Path(f"{prefix}.csv").write_text(table_csv(results))
    plot_per_class(results, f"{prefix}_per_class.png")
    print(f"\nwrote {', '.join(written)}")
    return 0


def _compare_detection(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """``compare`` of ``geoharmony detect`` runs: the paper's AP table."""
    from geoharmony.config import ConfigError
    from geoharmony.detection.report import detection_csv, detection_markdown, is_detection
    from geoharmony.eval.compare import run_label

    others = [r["_path"] for r in results if not is_detection(r)]
    if others or args.reference:
        culprit = ", ".join(others) if others else f"--reference {args.reference}"
        raise ConfigError(f"{culprit}: detection runs compare only with detection runs")
    labels = [run_label(r) for r in results]
    markdown = detection_markdown(results, labels)
    prefix = Path(args.output)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.md").write_text(markdown + "\n")
    Path(f"{prefix}.csv").write_text(detection_csv(results, labels))
    print(markdown)
    print(f"\nwrote {prefix}.md, {prefix}.csv")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from geoharmony.data.overview import format_report, inspect_source, plot_class_counts
    from geoharmony.downstream.commands import check_file_source_arguments
    from geoharmony.eval import write_json

    check_file_source_arguments(args)
    report = inspect_source(
        args.data_source,
        args.root,
        args.labels,
        args.train_list,
        args.test_list,
        workers=args.workers,
    )
    print(format_report(report))
    output = Path(args.output)
    written = [output.with_suffix(".json")]
    write_json(written[0], report)
    if report["labelled"]:
        written.append(output.with_suffix(".png"))
        plot_class_counts(report, written[1])
    print(f"wrote {' and '.join(map(str, written))}")
    return 0


def _compare_reference(results: list[dict], args: argparse.Namespace, prefix: Path) -> str:
    """The deficit tables against ``--reference`` and their reading (markdown); writes the
    deficit CSV, JSON and plot. Refuses, before writing anything, a reference that cannot serve
    every run (:func:`geoharmony.eval.deficit.check_reference`)."""
    from geoharmony.eval import write_json
    from geoharmony.eval.compare import (
        deficit_csv,
        deficit_markdown,
        load_results,
        plot_deficits,
        run_label,
        shared_probes,
    )
    from geoharmony.eval.deficit import check_reference, run_deficits
    from geoharmony.eval.reading import load_study, write_reading

    (reference,) = load_results([args.reference])
    for r in results:
        check_reference(r, reference)
    probes = shared_probes([*results, reference])
    deficits = {p: [run_deficits(r, reference, p) for r in results] for p in probes}
    study = load_study(args.study)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}_deficit.csv").write_text(deficit_csv(results, deficits))
    records = [
        {"run": run_label(r), "path": r["_path"], **{p: deficits[p][i] for p in probes}}
        for i, r in enumerate(results)
    ]
    write_json(f"{prefix}_deficit.json", {"reference": reference["_path"], "runs": records})
    plot_deficits(results, deficits, f"{prefix}_deficit.png")
    return (
        f"### Deficit against the balanced reference ({reference['_path']})\n\n"
        "Reference accuracy minus run accuracy per class, in points (above 0: accuracy the long "
        "tail cost), averaged within Many/Medium/Few as grouped by each run's own pretraining "
        "counts.\n\n"
        + deficit_markdown(results, deficits)
        + "\n\n### Reading\n\n"
        + write_reading(results, deficits, study)
    )


def build_parser() -> argparse.ArgumentParser:
    from geoharmony.detection.commands import add_detection_commands
    from geoharmony.downstream.commands import add_downstream_commands, add_file_source_arguments

    parser = argparse.ArgumentParser(
        prog="geoharmony",
        description="Self-supervised learning on long-tailed data with Geometric Harmonization.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "pretrain",
        help="pretrain a method (optionally +GH), then evaluate it",
        description="Pretrain, checkpointing as it goes, then write DIR/metrics.json. "
        "Rerunning the same command resumes from the newest valid checkpoint.",
    )
    p.add_argument("--config", required=True, help="YAML preset (see configs/)")
    p.add_argument("--output", required=True, help="run directory")
    p.add_argument(
        "--resume",
        choices=("auto", "never", "must"),
        default="auto",
        help="auto: continue if DIR has checkpoints (default); never: refuse; must: require",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start from another run's checkpoint (e.g. a +GH run continuing its baseline)",
    )
    p.add_argument("--stop-after", type=int, metavar="EPOCHS", help="pause after this epoch")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint (linear probe, kNN, geometry)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--output", help="metrics file (default: RUN/metrics.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. eval.probe=sgd")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "inspect",
        help="what a data source holds, before training: classes, sizes, unreadable files",
        description="Decode every image once and report the images per class, the imbalance "
        "ratio, image sizes and modes and the unreadable files; write OUTPUT.json and (labelled "
        "images) OUTPUT.png, the class distribution on a log scale.",
    )
    add_file_source_arguments(p, required=False, every_source=True)
    p.add_argument(
        "--labels", choices=("auto", "none"), default="auto", help="as data.labels (default auto)"
    )
    p.add_argument("--workers", type=int, default=2, help="decoding processes (0: this one)")
    p.add_argument(
        "--output", default="inspect", help="OUTPUT.json and OUTPUT.png (default: ./inspect)"
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "compare",
        help="paper-style table and per-class plot of several runs",
        description="Tables (Many/Med/Few/Std/Avg) and a per-class plot of several runs. With "
        "--reference, also the deficit against a balanced run of the same data, probe protocol "
        "and image count (reference minus run accuracy per class, grouped by each run's own "
        "pretraining counts), its per-class plot, and a short reading of the result.",
    )
    p.add_argument("runs", nargs="+", help="run directories (or metrics.json files)")
    p.add_argument("--output", default="comparison", help="output prefix (default: comparison)")
    p.add_argument(
        "--reference",
        metavar="BALANCED_RUN",
        help="balanced-pretraining run (data.imbalance_ratio=1, same total image count)",
    )
    p.add_argument(
        "--study",
        metavar="NOISE_JSON",
        help="the quality study's noise levels for the reading (default: the file that ships "
        "with the package, written by `python -m benchmarks.quality report`)",
    )
    p.set_defaults(func=cmd_compare)
    add_downstream_commands(sub)
    add_detection_commands(sub)
    return parser


def _leave_process_group(succeeded: bool) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if succeeded:
            dist.barrier()  # no rank tears down gloo's connections while a peer still uses them
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    from geoharmony.config import ConfigError
    from geoharmony.data.sources import DataFormatError
    from geoharmony.engine.checkpoint import CheckpointError
    from geoharmony.engine.numerics import NonFiniteLossError
    from geoharmony.engine.run_lock import RunFolderBusy
    from geoharmony.eval.compare import ResultFileError
    from geoharmony.eval.deficit import ReferenceMismatchError
    from geoharmony.eval.features import NonFiniteFeaturesError

    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    code = 1
    try:
        code = int(args.func(args))
        return code
    except (
        ConfigError,
        DataFormatError,
        CheckpointError,
        RunFolderBusy,
        FileNotFoundError,
        NonFiniteFeaturesError,
        ReferenceMismatchError,
        ResultFileError,
    ) as err:
        print(f"geoharmony: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"geoharmony: stopped: {err}", file=sys.stderr)
        return 3
    finally:
        _leave_process_group(code == 0)


if __name__ == "__main__":
    sys.exit(main())
