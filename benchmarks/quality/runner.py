"""Resumable, parallel execution of the plan.

Each run is ``geoharmony pretrain`` in its own single-thread process (two single-thread processes
gave ~1.5x the throughput of one two-thread process on 2 cores) writing ``ROOT/<run_id>/``;
then, in the same slot, the few-shot and held-out probes (``fewshot.json``). A run with
``metrics.json`` and ``fewshot.json`` is done and skipped; an interrupted run resumes from its
newest checkpoint when the command is rerun. A paired +GH run starts as soon as its
baseline's checkpoint at the end of the GH warm-up exists. One runner per root at a time (a lock
file). Every finished run's results are copied into the committed record store
(:mod:`.records`), which the report reads.

A run recorded in an earlier sitting whose folder is gone (run folders do not outlive their
machine) is not run again. If a pending +GH run needs such a baseline's checkpoint, only the
baseline's first phase is recreated (``--stop-after`` the pair epoch, same command otherwise):
on one machine type and build, training is bit-identical for a command (a paused and resumed run
equals an uninterrupted one, tests/engine/test_trainer.py), so the branch point is the one the
recorded baseline passed through. That is checked, not assumed: the recreated phase's per-epoch
losses must equal the record's exactly, else the branch is set aside and its +GH run is not
started. (Across CPUs it fails: an AVX-512 Xeon and an AVX2 EPYC already differ in epoch 1.)
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchmarks.quality.plan import RunSpec
from benchmarks.quality.probes import FEWSHOT_FILE
from benchmarks.quality.records import machine_description, record_path, write_record

__all__ = ["pretrain_command", "run_plan", "run_state"]

RUN_OVERRIDES = ("train.threads=1", "train.progress=false")


def _checkpoint(root: Path, run_id: str, epoch: int) -> Path:
    return root / run_id / "checkpoints" / f"epoch_{epoch:05d}.ckpt"


def pretrain_command(spec: RunSpec, root: Path, flags: tuple[str, ...] = ()) -> list[str]:
    """The exact ``geoharmony pretrain`` command of a run (``flags``: e.g. ``--stop-after``)."""
    cmd = [sys.executable, "-m", "geoharmony.cli", "pretrain", "--config", spec.config]
    cmd += ["--output", str(root / spec.run_id), *flags]
    if spec.init_from is not None:
        assert spec.pair_epoch is not None
        cmd += ["--init-from", str(_checkpoint(root, spec.init_from, spec.pair_epoch))]
    return [*cmd, *spec.overrides, *RUN_OVERRIDES]


def run_state(spec: RunSpec, root: Path) -> str:
    """``done``, ``probes`` (pretrained, few-shot missing), ``partial`` or ``new``."""
    run = root / spec.run_id
    if (run / "metrics.json").is_file():
        return "done" if (run / FEWSHOT_FILE).is_file() else "probes"
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("epoch_*.ckpt")):
        return "partial"
    return "new"


def _ready(spec: RunSpec, root: Path) -> bool:
    if spec.init_from is None or run_state(spec, root) == "partial":
        return True
    assert spec.pair_epoch is not None
    return _checkpoint(root, spec.init_from, spec.pair_epoch).is_file()


def branch_flags(epoch: int) -> tuple[str, ...]:
    """Flags that recreate a recorded baseline's first phase only, up to its pair epoch."""
    return ("--stop-after", str(epoch), "--no-eval")


def branch_mismatch(base: RunSpec, root: Path, store: Path, epoch: int) -> str | None:
    """Why the recreated first ``epoch`` epochs of recorded ``base`` are not the recorded ones
    (per-epoch training losses compared exactly), or None when they are."""
    from geoharmony.engine.checkpoint import load_checkpoint

    record = json.loads(record_path(store, base.run_id).read_text())
    recreated = load_checkpoint(_checkpoint(root, base.run_id, epoch))["history"]
    want = [h["loss"] for h in record["metrics"]["history"][:epoch]]
    got = [h["loss"] for h in recreated]
    why = None
    if len(got) != epoch or len(want) != epoch:
        why = f"{len(got)} recreated and {len(want)} recorded epochs, {epoch} expected"
    else:
        first = next((i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), None)
        if first is not None:
            why = f"epoch {first + 1} loss {got[first]!r} recreated, {want[first]!r} recorded"
    here = machine_description()
    if why is not None and record.get("machine") != here:
        # Other CPUs take other kernels (AVX2 vs AVX-512 ...), so the float results differ.
        why += f"; recorded on {record.get('machine')}, this is {here}"
    return why


def _set_aside(run: Path) -> Path:
    """Move a run folder out of the runner's way (kept for inspection)."""
    aside = run.with_name(f"{run.name}.mismatch-{int(time.time())}")
    run.rename(aside)
    return aside


@dataclass
class _Job:
    spec: RunSpec
    stage: str  # pretrain | probes | branch (a recorded baseline's first phase, recreated)
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float
    branch_epoch: int | None = None


REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # src/ too: a run must not depend on the editable install's .pth file being in place.
    paths = (str(REPO), str(REPO / "src"), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _start(spec: RunSpec, root: Path, stage: str, branch_epoch: int | None = None) -> _Job:
    run = root / spec.run_id
    run.mkdir(parents=True, exist_ok=True)
    if stage == "branch":
        assert branch_epoch is not None
        cmd = pretrain_command(spec, root, branch_flags(branch_epoch))
    elif stage == "pretrain":
        cmd = pretrain_command(spec, root)
        (run / "command.txt").write_text(shlex.join(cmd) + "\n")
    else:
        cmd = [sys.executable, "-m", "benchmarks.quality", "fewshot", str(run)]
    log = open(run / f"{stage}.log", "ab")
    log.write(f"\n$ {shlex.join(cmd)}\n".encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
    return _Job(spec, stage, proc, log, time.time(), branch_epoch)


def _record_time(job: _Job, root: Path) -> None:
    path = root / job.spec.run_id / "timing.json"
    timing = json.loads(path.read_text()) if path.is_file() else {}
    timing.setdefault(job.stage, []).append(round(time.time() - job.started, 1))
    path.write_text(json.dumps(timing, indent=1) + "\n")


def run_plan(
    plan: list[RunSpec],
    root: Path,
    store: Path,
    workers: int = 2,
    known_methods: set[str] | None = None,
    poll: float = 2.0,
) -> dict[str, list[str]]:
    """Run every spec of ``plan`` that is not done, writing each finished run's record into
    ``store`` (also for runs already done under ``root`` without one); returns ids by outcome."""
    root.mkdir(parents=True, exist_ok=True)
    lock = open(root / ".runner.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another runner holds {root / '.runner.lock'}; wait for it") from None
    outcome: dict[str, list[str]] = {"done": [], "ran": [], "failed": [], "skipped": []}
    pending: list[RunSpec] = []
    recorded: dict[str, RunSpec] = {}  # done in an earlier sitting, folder gone
    for spec in plan:
        if known_methods is not None and spec.method not in known_methods:
            print(f"skip {spec.run_id}: method {spec.method!r} is not registered", flush=True)
            outcome["skipped"].append(spec.run_id)
        elif run_state(spec, root) == "done":
            if not record_path(store, spec.run_id).is_file():
                write_record(spec, root / spec.run_id, store)
            outcome["done"].append(spec.run_id)
        elif record_path(store, spec.run_id).is_file():
            recorded[spec.run_id] = spec
            outcome["done"].append(spec.run_id)
        elif spec.recipe != "paper":
            print(
                f"skip {spec.run_id}: a run of the retired recipe {spec.recipe!r}, which "
                "today's code no longer trains",
                flush=True,
            )
            outcome["skipped"].append(spec.run_id)
        else:
            pending.append(spec)
    branches: dict[str, RunSpec] = {}
    for spec in pending:
        if spec.init_from not in recorded:
            continue
        assert spec.pair_epoch is not None
        # A branch point left by an earlier runner is checked again (that runner may have
        # stopped between recreating and checking it).
        base = recorded[spec.init_from]
        left = _checkpoint(root, base.run_id, spec.pair_epoch).is_file()
        if left and (why := branch_mismatch(base, root, store, spec.pair_epoch)):
            aside = _set_aside(root / base.run_id)
            print(f"set aside {aside.name}: not the recorded first phase ({why})", flush=True)
        if not _ready(spec, root):
            branches[base.run_id] = base
    print(
        f"{len(outcome['done'])} done ({len(recorded)} of them recorded only),"
        f" {len(pending)} to run, {len(branches)} recorded baselines' first phase to recreate,"
        f" {len(outcome['skipped'])} skipped; {workers} workers; runs under {root}",
        flush=True,
    )
    failed: set[str] = set()
    jobs: list[_Job] = []
    # A stopped runner stops its runs too: an orphaned run would go on training after the lock
    # is released, beside the next runner's process for the same run (now refused by RunLock).
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _drive(pending, branches, jobs, failed, outcome, root, store, workers, poll)
    finally:
        _stop(jobs)
        signal.signal(signal.SIGTERM, previous)
        lock.close()
    return outcome


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop(jobs: list[_Job], grace: float = 30.0) -> None:
    """Terminate running jobs (a run resumes from its last checkpoint); kill after ``grace`` s."""
    for job in jobs:
        if job.proc.poll() is None:
            print(f"stopping {job.spec.run_id} ({job.stage})", flush=True)
            job.proc.terminate()
    for job in jobs:
        try:
            job.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            job.proc.kill()
            job.proc.wait()
        job.log.close()


def _drive(
    pending: list[RunSpec],
    branches: dict[str, RunSpec],
    jobs: list[_Job],
    failed: set[str],
    outcome: dict[str, list[str]],
    root: Path,
    store: Path,
    workers: int,
    poll: float,
) -> None:
    """Start, watch and record runs until nothing is pending or running; ``branches`` (by id):
    recorded baselines whose first phase a pending +GH run needs recreated (started on demand)."""

    def fail(run_id: str, why: str) -> None:
        failed.add(run_id)
        outcome["failed"].append(run_id)
        print(f"FAILED {run_id}{why}", flush=True)

    while pending or jobs:
        for job in list(jobs):
            rc = job.proc.poll()
            if rc is None:
                continue
            jobs.remove(job)
            job.log.close()
            _record_time(job, root)
            spec = job.spec
            elapsed = time.time() - job.started
            if rc != 0:
                fail(spec.run_id, f" ({job.stage}, exit {rc}); see its log")
            elif job.stage == "branch":
                assert job.branch_epoch is not None
                why = branch_mismatch(spec, root, store, job.branch_epoch)
                if why is None:
                    print(
                        f"recreated the first phase of {spec.run_id} in {elapsed:.0f} s"
                        " (losses equal the record's)",
                        flush=True,
                    )
                else:
                    aside = _set_aside(root / spec.run_id)
                    fail(
                        spec.run_id,
                        f": its recreated first phase is not the recorded one ({why}); moved to"
                        f" {aside.name}",
                    )
            elif job.stage == "pretrain" and run_state(spec, root) == "probes":
                print(f"pretrained {spec.run_id} in {elapsed:.0f} s", flush=True)
                jobs.append(_start(spec, root, "probes"))
            elif run_state(spec, root) == "done":
                write_record(spec, root / spec.run_id, store)
                print(f"finished {spec.run_id} ({job.stage}, {elapsed:.0f} s)", flush=True)
                outcome["ran"].append(spec.run_id)
            else:
                fail(spec.run_id, f" ({job.stage} exited 0, results missing)")
        # Drop runs whose baseline failed; start ready runs while slots are free.
        for spec in list(pending):
            if spec.init_from in failed:
                pending.remove(spec)
                fail(spec.run_id, f": its baseline {spec.init_from} failed")
        while len(jobs) < workers:
            # A +GH run waits for its recreated branch point until that has been checked.
            checking = {job.spec.run_id for job in jobs if job.stage == "branch"}
            ready = next(
                (
                    s
                    for s in pending
                    if s.init_from not in checking and (_ready(s, root) or s.init_from in branches)
                ),
                None,
            )
            if ready is None:
                break
            if not _ready(ready, root):  # its recorded baseline's first phase comes first
                base = branches.pop(ready.init_from)
                print(f"start {base.run_id} (branch: first {ready.pair_epoch} epochs)", flush=True)
                jobs.append(_start(base, root, "branch", ready.pair_epoch))
                continue
            pending.remove(ready)
            stage = "probes" if run_state(ready, root) == "probes" else "pretrain"
            print(f"start {ready.run_id} ({stage})", flush=True)
            jobs.append(_start(ready, root, stage))
        if not jobs and pending:
            blocked = ", ".join(s.run_id for s in pending[:3])
            print(f"nothing runnable: waiting baselines missing for {blocked}", flush=True)
            for spec in pending:
                outcome["failed"].append(spec.run_id)
            break
        time.sleep(poll)
