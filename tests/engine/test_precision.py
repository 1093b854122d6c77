"""``train.precision``: ``auto`` picks bf16 only where the hardware computes it natively."""

from __future__ import annotations

import pytest
import torch

from geoharmony.engine import runtime
from geoharmony.engine.runtime import autocast_dtype, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_follows_onednn_native_bf16_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    calls = []

    def probe() -> bool:
        calls.append(1)
        return native

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", probe)
    assert resolve_precision("auto", CPU) == expected
    assert calls, "auto asked oneDNN"
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_explicit_precisions_are_kept(precision: str, dtype: torch.dtype | None) -> None:
    assert resolve_precision(precision, CPU) == precision
    assert autocast_dtype(precision, CPU) == dtype


def test_auto_on_this_machine_matches_onednn() -> None:
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert runtime._native_bf16(CPU) is native
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
