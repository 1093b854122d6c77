"""RunLock: one training process per run folder, released however its holder ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from geoharmony.engine.run_lock import RunFolderBusy, RunLock
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

HOLDER = textwrap.dedent(
    """
    import sys, time
    from geoharmony.engine.run_lock import RunLock
    with RunLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
    """
)


def _hold_in_another_process(run: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_second_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    holder = _hold_in_another_process(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusy, match=r"another process is training in .*run"):
            with RunLock(tmp_path / "run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Killed without any clean-up: the kernel dropped its lock, the stale file blocks nothing.
    assert (tmp_path / "run" / ".lock").exists()
    with RunLock(tmp_path / "run"):
        pass


def test_the_lock_can_be_taken_again_after_release(tmp_path: Path) -> None:
    for _ in range(2):
        with RunLock(tmp_path) as lock:
            assert lock.path.read_text().strip().isdigit()


@needs_fashion_mnist
def test_pretrain_refuses_a_folder_another_process_trains_in(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = _hold_in_another_process(run)
    try:
        cmd = [sys.executable, "-m", "geoharmony", "pretrain", "--config", SMOKE]
        result = subprocess.run(
            [*cmd, "--output", str(run), *TINY, "optim.epochs=1"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert result.returncode == 2, result.stderr
    assert "geoharmony: error: another process is training in" in result.stderr
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())
