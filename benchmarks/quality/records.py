"""Committed per-run records: the report's only input.

A run folder (checkpoints, logs, TensorBoard) lives under the ignored ``runs/`` and does not
outlive the machine it was made on: the 197 runs behind the report of 2026-11-28 were lost that
way, with only their aggregates left. So when a run is done, the runner copies what the report
reads (``metrics.json``, ``fewshot.json``, its timing and its exact command; tens of KB) into one
JSON record per run in a folder that is committed (:data:`STORE`), and ``report`` reads records
only. A fresh clone then regenerates ``docs/results.md`` exactly, and a later sitting adds runs
to the same set.

A record also keeps the run's configuration file and overrides; loading it against a plan that
now declares different ones is an error that names the run, since its numbers would no longer
mean what the plan says.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.quality.plan import RunSpec
from benchmarks.quality.probes import FEWSHOT_FILE

from geoharmony.eval.probes import upgrade_metrics

__all__ = [
    "GPU_STORE",
    "SCHEMA",
    "STORE",
    "load_records",
    "machine_description",
    "record_path",
    "sync_records",
    "write_record",
]

REPO = Path(__file__).resolve().parents[2]
STORE = REPO / "benchmarks" / "results" / "quality"
GPU_STORE = REPO / "benchmarks" / "results" / "quality_gpu"
SCHEMA = 1


def record_path(store: Path, run_id: str) -> Path:
    return store / f"{run_id}.json"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def machine_description() -> str:
    """This machine in one line: CPU model, cores, Python and torch versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def write_record(spec: RunSpec, run_dir: Path, store: Path, reprobed: bool = False) -> Path:
    """Copy a finished run's results from ``run_dir`` into ``store/<run_id>.json`` (atomic).

    ``reprobed``: only probes were added to a recorded run, so its record keeps the commit,
    machine and date of the run, and names this commit and date under ``reprobed``.

    Raises FileNotFoundError naming the file when the run is not finished (no ``metrics.json``
    or no ``fewshot.json``).
    """
    for name in ("metrics.json", FEWSHOT_FILE):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name}: missing; is {spec.run_id} finished?")
    command = run_dir / "command.txt"
    timing = run_dir / "timing.json"
    record = {
        "schema": SCHEMA,
        "run_id": spec.run_id,
        "spec": spec.record(),
        "config": spec.config,
        "overrides": list(spec.overrides),
        "init_from": spec.init_from,
        "command": shlex.split(command.read_text()) if command.is_file() else None,
        "commit": _git_commit(),
        "machine": machine_description(),
        "recorded": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "timing": _read_json(timing) if timing.is_file() else {},
        "metrics": _read_json(run_dir / "metrics.json"),
        "fewshot": _read_json(run_dir / FEWSHOT_FILE),
    }
    path = record_path(store, spec.run_id)
    if reprobed and path.is_file():
        old = _read_json(path)
        again = {"commit": record["commit"], "recorded": record["recorded"]}
        record.update({k: old[k] for k in ("commit", "machine", "recorded")})
        record["reprobed"] = again
    store.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=None, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
    return path


def sync_records(plan: Sequence[RunSpec], root: Path, store: Path) -> list[str]:
    """Write the record of every finished run of ``plan`` under ``root``; returns their ids."""
    written = []
    for spec in plan:
        run = root / spec.run_id
        if (run / "metrics.json").is_file() and (run / FEWSHOT_FILE).is_file():
            write_record(spec, run, store)
            written.append(spec.run_id)
    return written


def load_records(plan: Sequence[RunSpec], store: Path) -> dict[str, dict[str, Any]]:
    """``{run_id: {"spec", "metrics", "fewshot", "timing", "command", "machine", "recorded"}}`` for
    every run of
    ``plan`` with a record in ``store``.

    Raises ValueError naming the record when it was made with another configuration file or
    other overrides than the plan now declares for that run id.
    """
    runs: dict[str, dict[str, Any]] = {}
    for spec in plan:
        path = record_path(store, spec.run_id)
        if not path.is_file():
            continue
        record = _read_json(path)
        if record.get("schema") != SCHEMA:
            raise ValueError(f"{path}: record schema {record.get('schema')!r}, expected {SCHEMA}")
        made_with = (record["config"], record["overrides"])
        if made_with != (spec.config, list(spec.overrides)):
            raise ValueError(
                f"{path}: made with {record['config']} {' '.join(record['overrides'])}, but the "
                f"plan now declares {spec.config} {' '.join(spec.overrides)} for {spec.run_id}; "
                "rerun it or remove the record"
            )
        runs[spec.run_id] = {
            "spec": spec,
            "metrics": upgrade_metrics(record["metrics"]),
            "fewshot": record["fewshot"],
            "timing": record["timing"],
            "command": record["command"],
            "machine": record.get("machine"),
            "recorded": record.get("recorded"),
        }
    return runs
