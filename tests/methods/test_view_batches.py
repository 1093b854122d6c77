"""Each augmented view is its own BatchNorm batch (the official ``z1 = encoder(x1); z2 =
encoder(x2)``), for every registered method; ``model.joint_view_batch`` restores one batch of 2B."""

from __future__ import annotations

import pytest
import torch

from geoharmony.configure import load_config
from geoharmony.methods import METHODS, DataInfo, build_method

UNIT = ["model.width=0.0625", "model.projector_hidden=16", "model.projector_dim=8"]


def views(seed: int) -> torch.Tensor:
    return torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_view_one_does_not_depend_on_view_two_in_training_mode(name: str) -> None:
    torch.manual_seed(0)
    method = build_method(load_config(None, [*UNIT, f"method.name={name}"]), DataInfo(8, 1))
    method.train()
    with torch.no_grad():
        z1, _ = method.embed_views(views(0), views(1))
        z1_other, _ = method.embed_views(views(0), views(2) * 3 + 1)
        alone = method.embed(views(0))
    torch.testing.assert_close(z1, z1_other, rtol=0, atol=0)
    torch.testing.assert_close(z1, alone, rtol=0, atol=0)


def test_the_joint_option_shares_one_batch_of_both_views() -> None:
    cfg = load_config(None, [*UNIT, "model.joint_view_batch=true"])
    method = build_method(cfg, DataInfo(8, 1))
    method.train()
    with torch.no_grad():
        z1, z2 = method.embed_views(views(0), views(1))
        z1_other, _ = method.embed_views(views(0), views(2) * 3 + 1)
        both = method.embed(torch.cat([views(0), views(1)]))
    assert not torch.allclose(z1, z1_other)  # view 2 moved view 1's BatchNorm statistics
    torch.testing.assert_close(torch.cat([z1, z2]), both, rtol=0, atol=0)
