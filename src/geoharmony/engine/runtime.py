"""Process-level set-up: device, threads, the distributed process group, RNG state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist

__all__ = [
    "Runtime",
    "autocast_dtype",
    "capture_rng",
    "pick_device",
    "resolve_precision",
    "restore_rng",
    "setup_runtime",
]


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The device ``train.device`` names (``auto``: this rank's GPU if there is one, else CPU)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def _native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions in hardware rather than emulating them.

    On a CPU without AVX-512 (AVX2 only), oneDNN emulates bfloat16 and a CPU-scale training step
    under bf16 autocast was measured 13x *slower* than float32 (benchmarks/precision_cost.py).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``train.precision`` as run on ``device``: ``auto`` is ``bf16`` where the device computes
    bfloat16 natively, else ``fp32``; the other values are returned as given."""
    if precision != "auto":
        return precision
    return "bf16" if _native_bf16(device) else "fp32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` on ``device`` (None: no autocast, float32)."""
    resolved = resolve_precision(precision, device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved)


class RunSettings(Protocol):
    """What :func:`setup_runtime` reads (pretraining's ``train`` section, detection's, ...)."""

    device: str
    threads: int | None
    seed: int


def setup_runtime(cfg: RunSettings) -> Runtime:
    """Choose the device, join the process group when launched by torchrun, seed every RNG."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    # Our own draws all use explicit seeded generators; this covers third-party code.
    torch.manual_seed(cfg.seed)
    return Runtime(device, rank, world_size, local_rank)


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
