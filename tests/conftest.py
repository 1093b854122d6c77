"""Shared fixtures: a launcher for real multi-process ``torch.distributed`` (gloo) runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_ranks(
    command: Sequence[str], world_size: int, timeout: float = 300.0, cwd: Path | None = None
) -> None:
    """Start ``world_size`` processes of ``command`` with torchrun's environment variables.

    Every rank runs single-threaded so that 2 ranks on 2 cores do not oversubscribe. Raises with
    the failing ranks' output when any rank exits non-zero or the run exceeds ``timeout``.
    """
    port = _free_port()
    procs = []
    for rank in range(world_size):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                list(command), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    failures = []
    for rank, proc in enumerate(procs):
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"rank {rank} timed out after {timeout} s") from None
        if proc.returncode != 0:
            failures.append(f"--- rank {rank} exited {proc.returncode}:\n{out.decode()[-4000:]}")
    if failures:
        raise AssertionError("\n".join(failures))


@pytest.fixture
def run_distributed() -> Callable[..., None]:
    """``run_distributed(script_path, world_size, *args)`` runs a Python script on N gloo ranks."""

    def run(script: Path, world_size: int, *args: str, timeout: float = 300.0) -> None:
        launch_ranks([sys.executable, str(script), *args], world_size, timeout=timeout)

    return run
