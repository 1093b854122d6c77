"""The quality runner's process handling: a stopped runner leaves no run training behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
