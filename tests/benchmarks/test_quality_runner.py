"""The quality runner's process handling: a stopped runner leaves no run training behind, and a
run recorded in an earlier sitting is not run again (only a baseline's first phase is recreated
when a pending +GH run needs its checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from benchmarks.quality import plan, runner

ROOT = Path(__file__).resolve().parents[2]

# A runner whose only run is a stand-in that writes its pid and sleeps (no training needed).
RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from benchmarks.quality import plan, runner

    root, pid_file = Path(sys.argv[1]), sys.argv[2]
    sleeper = "import os, time; open({!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    runner.pretrain_command = lambda spec, root: [sys.executable, "-c", sleeper.format(pid_file)]
    spec = next(s for s in plan.build_plan(quick=True) if s.init_from is None)
    runner.run_plan([spec], root / "runs", root / "store", workers=1, poll=0.01)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_runner_stops_its_runs(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp_path), str(pid_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)

    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopping" in output, output
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the run outlived its runner"


# A stand-in for ``geoharmony pretrain``: logs its run and flags, then writes what a real run
# leaves: paused by --stop-after, a real checkpoint whose epoch i has loss i (or LOSS_SHIFT more);
# otherwise the finished run's files.
FAKE_PRETRAIN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from geoharmony.engine.checkpoint import save_checkpoint
    log, run, flags = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    with open(log, "a") as f:
        f.write(json.dumps([run.name, flags]) + "\\n")
    if "--stop-after" in flags:
        stop = int(flags[flags.index("--stop-after") + 1])
        shift = float(os.environ.get("LOSS_SHIFT", "0"))
        history = [{"epoch": i, "loss": i + shift} for i in range(1, stop + 1)]
        save_checkpoint(run / "checkpoints" / f"epoch_{stop:05d}.ckpt", {"history": history})
    else:
        (run / "metrics.json").write_text("{}")
        (run / "fewshot.json").write_text("{}")
    """
)


@pytest.fixture
def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs are stand-ins (see FAKE_PRETRAIN) logged to the returned file; records are markers."""
    log = tmp_path / "runs.log"

    def command(spec: plan.RunSpec, root: Path, flags: tuple[str, ...] = ()) -> list[str]:
        return [sys.executable, "-c", FAKE_PRETRAIN, str(log), str(root / spec.run_id), *flags]

    def record(spec: plan.RunSpec, run_dir: Path, store: Path) -> Path:
        path = store / f"{spec.run_id}.json"
        path.write_text(json.dumps({"run_id": spec.run_id}))
        return path

    monkeypatch.setattr(runner, "pretrain_command", command)
    monkeypatch.setattr(runner, "write_record", record)
    return log


def _pair() -> tuple[plan.RunSpec, plan.RunSpec]:
    full = plan.build_plan(quick=True)
    gh = next(s for s in full if s.init_from is not None)
    base = next(s for s in full if s.run_id == gh.init_from)
    return base, gh


def _recorded_pair(tmp_path: Path, epochs: int = 0) -> tuple[plan.RunSpec, plan.RunSpec, Path]:
    """A baseline and its +GH run, with a record of the baseline as an earlier sitting left it
    (epoch i had loss i; ``epochs`` of them, default 3 past the pair epoch) in the store."""
    base, gh = _pair()
    assert gh.pair_epoch is not None
    store = tmp_path / "store"
    store.mkdir()
    history = [{"epoch": i, "loss": float(i)} for i in range(1, (epochs or gh.pair_epoch + 3) + 1)]
    (store / f"{base.run_id}.json").write_text(json.dumps({"metrics": {"history": history}}))
    return base, gh, store


def _logged(log: Path) -> list[list]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def test_a_recorded_baseline_is_not_rerun_only_its_first_phase(
    tmp_path: Path, fake_runs: Path
) -> None:
    base, gh, store = _recorded_pair(tmp_path)  # the baseline's run folder is gone

    outcome = runner.run_plan([base, gh], tmp_path / "runs", store, workers=2, poll=0.01)

    assert _logged(fake_runs) == [
        [base.run_id, ["--stop-after", str(gh.pair_epoch), "--no-eval"]],
        [gh.run_id, []],
    ]
    assert outcome["done"] == [base.run_id]
    assert outcome["ran"] == [gh.run_id]
    assert (store / f"{gh.run_id}.json").is_file()


def test_a_recreated_first_phase_that_differs_from_the_record_is_set_aside(
    tmp_path: Path, fake_runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    base, gh, store = _recorded_pair(tmp_path)
    monkeypatch.setenv("LOSS_SHIFT", "1e-12")

    outcome = runner.run_plan([base, gh], tmp_path / "runs", store, workers=2, poll=0.01)

    assert [run for run, _ in _logged(fake_runs)] == [base.run_id]  # the +GH run never started
    assert outcome["failed"] == [base.run_id, gh.run_id]
    assert not (store / f"{gh.run_id}.json").exists()
    assert not (tmp_path / "runs" / base.run_id).exists()
    assert len(list((tmp_path / "runs").glob(f"{base.run_id}.mismatch-*"))) == 1
    said = capsys.readouterr().out
    assert "epoch 1 loss 1.000000000001 recreated, 1.0 recorded" in said
    assert f"this is {runner.machine_description()}" in said  # the record names no machine


def test_a_branch_point_left_by_an_earlier_runner_is_checked_again(
    tmp_path: Path, fake_runs: Path
) -> None:
    from geoharmony.engine.checkpoint import save_checkpoint

    base, gh, store = _recorded_pair(tmp_path)
    wrong = [{"epoch": i, "loss": i + 0.5} for i in range(1, gh.pair_epoch + 1)]
    left = tmp_path / "runs" / base.run_id / "checkpoints" / f"epoch_{gh.pair_epoch:05d}.ckpt"
    save_checkpoint(left, {"history": wrong})

    outcome = runner.run_plan([base, gh], tmp_path / "runs", store, workers=2, poll=0.01)

    assert [run for run, _ in _logged(fake_runs)] == [base.run_id, gh.run_id]  # recreated first
    assert outcome["ran"] == [gh.run_id]
    assert len(list((tmp_path / "runs").glob(f"{base.run_id}.mismatch-*"))) == 1


def test_recorded_runs_are_skipped_and_a_failed_first_phase_drops_its_gh_run(
    tmp_path: Path, fake_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, gh, store = _recorded_pair(tmp_path, epochs=5)
    (store / f"{gh.run_id}.json").write_text("{}")
    outcome = runner.run_plan([base, gh], tmp_path / "runs", store, workers=2, poll=0.01)
    assert _logged(fake_runs) == []
    assert outcome["done"] == [base.run_id, gh.run_id]

    (store / f"{gh.run_id}.json").unlink()
    monkeypatch.setattr(
        runner, "pretrain_command", lambda spec, root, flags=(): [sys.executable, "-c", "exit(3)"]
    )
    outcome = runner.run_plan([base, gh], tmp_path / "runs2", store, workers=2, poll=0.01)
    assert outcome["failed"] == [base.run_id, gh.run_id]
    assert not (store / f"{gh.run_id}.json").exists()
