"""``python -m benchmarks.quality {run,report,records,validate,plan,fewshot,prior-check}``.

Run folders go under ``runs/quality`` (ignored by git); each finished run's record goes into
``benchmarks/results/quality/`` (committed), and ``report`` reads the records only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.quality.plan import RunSpec, build_plan, in_core, select
from benchmarks.quality.records import GPU_STORE, STORE, sync_records

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the plan (resumable); records each finished run"),
        ("report", "write docs/results.* from the records"),
        ("records", "record every finished run under --root (runs made before records existed)"),
        (
            "validate",
            "add the held-out kNN probe and the sized kNN probe (k = 20) to finished runs "
            "probed without them; re-record them",
        ),
        ("plan", "list the plan and each run's state"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--quick", action="store_true", help="smoke scale (a few minutes)")
        p.add_argument("--root", type=Path, help="runs folder (default runs/quality[_quick])")
        p.add_argument(
            "--store",
            type=Path,
            help="run records (default benchmarks/results/quality[_gpu]; quick: ROOT/records)",
        )
        if name != "report":
            p.add_argument(
                "--core",
                action="store_true",
                help="only the plan's core (plan.CORE_PRIMARY; enough for every verdict)",
            )
            p.add_argument(
                "--gpu",
                action="store_true",
                help="SimCLR vs +GH at GPU scale (runs/quality_gpu; see gpu_study.sh)",
            )
        p.add_argument(
            "--only",
            action="append",
            metavar="PATTERN",
            help="glob on run ids (repeatable); their baselines are included",
        )
        if name == "run":
            p.add_argument("--workers", type=int, default=2)
        if name == "report":
            p.add_argument(
                "--docs",
                type=Path,
                help="output folder (default docs/, quick: runs/quality_quick/docs)",
            )
            p.add_argument(
                "--gpu-store",
                type=Path,
                default=GPU_STORE,
                help="records of GPU-scale runs to report beside the CPU ones, if any",
            )
    p = sub.add_parser("fewshot", help="few-shot probes of one finished run (fewshot.json)")
    p.add_argument("run_dir", type=Path)
    p = sub.add_parser(
        "prior-check", help="can the class prior be recovered from checkpoints' features?"
    )
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--anchors", type=int, default=10)
    p.add_argument(
        "--output",
        type=Path,
        help="JSON records for the report; records of other checkpoints already there are kept",
    )
    p.add_argument(
        "--assignments-only",
        action="store_true",
        help="only GH's allocation (+GH checkpoints), not the prior estimators (faster)",
    )
    args = parser.parse_args(argv)

    if args.command == "prior-check":
        import json

        from benchmarks.quality.prior_check import check_priors

        kept = json.loads(args.output.read_text()) if args.output and args.output.is_file() else []
        records = []
        for checkpoint in args.checkpoints:
            records.append(check_priors(checkpoint, args.anchors, not args.assignments_only))
            print(json.dumps(records[-1], indent=1), flush=True)
        if args.output:
            new = {r["checkpoint"] for r in records}
            merged = [r for r in kept if r["checkpoint"] not in new] + records
            args.output.write_text(json.dumps(merged, indent=1) + "\n")
        return 0

    if args.command == "fewshot":
        from benchmarks.quality.probes import run_fewshot

        out = run_fewshot(args.run_dir)
        print(f"wrote {args.run_dir / 'fewshot.json'} ({out['seconds']:.0f} s)")
        return 0
    gpu = getattr(args, "gpu", False)
    if gpu and args.quick:
        parser.error("--gpu and --quick exclude each other")
    default_root = (
        "runs/quality_gpu" if gpu else "runs/quality_quick" if args.quick else "runs/quality"
    )
    root = (args.root or REPO / default_root).resolve()
    store = (
        args.store or (root / "records" if args.quick else GPU_STORE if gpu else STORE)
    ).resolve()
    core = getattr(args, "core", False)
    if core and (gpu or args.quick):
        parser.error("--core selects from the full CPU plan; not with --gpu or --quick")
    full = build_plan(args.quick, gpu)
    plan = select([s for s in full if in_core(s)] if core else full, args.only)
    if args.command == "plan":
        from benchmarks.quality.records import record_path
        from benchmarks.quality.runner import run_state

        for spec in plan:
            recorded = "recorded" if record_path(store, spec.run_id).is_file() else ""
            print(f"{run_state(spec, root):8s} {recorded:8s} {spec.run_id}")
        return 0
    if args.command == "records":
        written = sync_records(plan, root, store)
        print(f"recorded {len(written)} finished runs of {root} in {store}")
        return 0
    if args.command == "validate":
        return _validate(plan, root, store)
    if args.command == "run":
        from benchmarks.quality.runner import run_plan

        from geoharmony.methods import METHODS

        outcome = run_plan(plan, root, store, args.workers, set(METHODS))
        print({k: len(v) for k, v in outcome.items()})
        return 1 if outcome["failed"] else 0
    from benchmarks.quality.report import write_report

    docs = args.docs or (root / "docs" if args.quick else REPO / "docs")
    gpu_store = None if args.quick else args.gpu_store.resolve()
    print(write_report(build_plan(args.quick), store, docs, quick=args.quick, gpu_store=gpu_store))
    print(f"wrote {docs / 'results.md'}, {docs / 'results.json'}")
    return 0


def _validate(plan: list[RunSpec], root: Path, store: Path) -> int:
    """Add :func:`.probes.add_missing_blocks`'s blocks to every finished run of ``plan`` lacking
    one, and re-record it."""
    from benchmarks.quality.probes import add_missing_blocks, load_fewshot, missing_blocks
    from benchmarks.quality.records import write_record
    from benchmarks.quality.runner import run_state

    todo = [
        s
        for s in plan
        if run_state(s, root) == "done" and missing_blocks(load_fewshot(root / s.run_id))
    ]
    print(f"{len(todo)} finished runs lack the held-out or the sized kNN probe", flush=True)
    for i, spec in enumerate(todo, 1):
        added = add_missing_blocks(root / spec.run_id)
        write_record(spec, root / spec.run_id, store, reprobed=True)
        found = []
        if "validation" in added:
            block = added["validation"]
            found.append(
                "no images left to hold out"
                if block is None
                else f"held-out kNN Few {block['knn']['few']:.2f}"
            )
        if "knn_k" in added:
            for k, block in added["knn_k"].items():
                found.append(f"kNN (k = {k}) Avg {block['avg']:.2f}")
        print(
            f"[{i}/{len(todo)}] {spec.run_id}: {'; '.join(found)} ({added['seconds']:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
