"""SDCLR: global magnitude mask, the pruned branch, gradients from both branches, +GH against the
official two-pass step, checkpointed state and bit-identical resume."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from geoharmony.configure import load_config
from geoharmony.losses import nt_xent
from geoharmony.methods import DataInfo, build_method
from geoharmony.methods.sdclr import SDCLR, magnitude_mask
from tiny_runs import REPO, needs_fashion_mnist, pause_resume_states

N = 16
UNIT = [
    "method.name=sdclr",
    "model.width=0.0625",
    "model.projector_hidden=16",
    "model.projector_dim=16",
]
GH_NOW = ["gh.enabled=true", "gh.num_anchors=4", "gh.warmup_epochs=0", "gh.ramp_epochs=0"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(*extra: str) -> SDCLR:
    method = build_method(load_config(None, [*UNIT, *extra]), DataInfo(N, 1))
    assert isinstance(method, SDCLR)
    return method


def views(seed: int = 0, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(batch, 1, 16, 16, generator=gen)
    x2 = x1 + 0.3 * torch.randn(batch, 1, 16, 16, generator=gen)
    return x1, x2, torch.arange(batch)


def conv_weights(method: SDCLR) -> dict[str, torch.Tensor]:
    return {
        f"{name}.weight": m.weight
        for name, m in method.backbone.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def grads(method: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in method.named_parameters()
    }


@pytest.mark.parametrize("ratio", [0.5, 0.9])
def test_mask_has_the_asked_sparsity_with_one_global_threshold(ratio: float) -> None:
    method = make(f"method.sdclr.prune_ratio={ratio}")
    mask, weights = method.prune_mask, conv_weights(method)
    n = sum(w.numel() for w in weights.values())
    assert mask.shape == (n,) and mask.dtype == torch.bool
    pruned = int((~mask).sum())
    assert pruned == math.ceil(ratio * n) and abs(pruned / n - ratio) <= 1 / n
    # Global (not per-layer) threshold: every pruned weight is no larger than every kept one.
    flat = torch.cat([w.detach().reshape(-1).abs() for w in weights.values()])
    assert flat[~mask].max() <= flat[mask].min()
    per_layer = [float((~m).float().mean()) for m in method.conv_masks().values()]
    assert max(per_layer) - min(per_layer) > 0.05  # layers are pruned unevenly
    # Every backbone conv (stem, blocks, shortcuts) is covered; the projector is not.
    assert list(method.conv_masks()) == list(weights)
    assert any("downsample" in name for name in weights) and "conv1.weight" in weights


def test_pruned_branch_is_the_masked_network_with_its_own_batchnorm() -> None:
    method = make()
    x1, x2, _ = views()
    # Reference: a plain copy whose conv weights are multiplied by the mask and whose
    # BatchNorms hold the pruned branch's parameters and statistics.
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.projector))
    with torch.no_grad():
        for name, mask in method.conv_masks().items():
            reference[0].get_parameter(name).mul_(mask)
    for index, part in enumerate(("backbone", "projector")):
        for name, m in reference[index].named_modules():
            if isinstance(m, _BatchNorm):
                key = f"{part}_{name}".replace(".", "_")
                m.load_state_dict(method.pruned_norms[key].state_dict())
    method.train()
    reference.train()
    assert torch.allclose(method.embed_pruned(x2), reference(x2), atol=1e-5)
    # Training mode updated the pruned branch's statistics exactly as the reference's...
    for index, part in enumerate(("backbone", "projector")):
        for name, m in reference[index].named_modules():
            if isinstance(m, _BatchNorm):
                key = f"{part}_{name}".replace(".", "_")
                mine = method.pruned_norms[key]
                assert torch.allclose(mine.running_mean, m.running_mean, atol=1e-6)
                assert torch.equal(mine.num_batches_tracked, m.num_batches_tracked)
    # ...and in eval mode the pruned branch normalises with them.
    method.eval()
    reference.eval()
    with torch.no_grad():
        assert torch.allclose(method.embed_pruned(x1), reference(x1), atol=1e-5)
        # The dense network differs (full weights, its own statistics).
        assert not torch.allclose(method.embed(x1), reference(x1), atol=1e-3)


def test_branches_keep_separate_batchnorm_statistics_after_a_step() -> None:
    method = make()
    x1, x2, idx = views()
    before = copy.deepcopy(method.state_dict())
    method.train()
    method(x1, x2, idx, 0.0).loss.backward()
    dense = method.backbone.layer2[0].bn1
    pruned = method.pruned_norms["backbone_layer2_0_bn1"]
    assert int(dense.num_batches_tracked) == 1 and int(pruned.num_batches_tracked) == 1
    assert not torch.allclose(dense.running_mean, pruned.running_mean)
    assert not torch.allclose(dense.running_var, pruned.running_var)
    # Both moved away from their (identical) initial values.
    assert not torch.equal(dense.running_mean, before["backbone.layer2.0.bn1.running_mean"])
    key = "pruned_norms.backbone_layer2_0_bn1.running_mean"
    assert not torch.equal(pruned.running_mean, before[key])
    # The pruned branch's affine parameters are its own and are trained.
    assert pruned.weight is not dense.weight and pruned.weight.grad is not None


def test_dense_weights_receive_gradients_from_both_branches() -> None:
    method = make()
    x1, x2, idx = views()
    temperature = method.cfg.method.temperature
    method.train()

    method.zero_grad()
    method(x1, x2, idx, 0.0).loss.backward()
    both = grads(method)

    method.zero_grad()
    nt_xent(method.embed(x1), method.embed_pruned(x2).detach(), temperature).backward()
    dense_only = grads(method)

    method.zero_grad()
    nt_xent(method.embed(x1).detach(), method.embed_pruned(x2), temperature).backward()
    pruned_only = grads(method)

    for name in conv_weights(method):
        key = f"backbone.{name}"
        assert torch.allclose(both[key], dense_only[key] + pruned_only[key], atol=1e-6)
    masks = method.conv_masks()
    name = "layer3.0.conv2.weight"
    key, keep = f"backbone.{name}", masks[name]
    assert not torch.allclose(both[key], dense_only[key])
    # The pruned branch reaches kept weights only; pruned-away ones learn from the dense branch.
    assert torch.count_nonzero(pruned_only[key][~keep]) == 0
    assert torch.count_nonzero(pruned_only[key][keep]) > 0.9 * int(keep.sum())
    assert torch.count_nonzero(dense_only[key][~keep]) > 0.9 * int((~keep).sum())
    # Each branch trains its own BatchNorm affine parameters only.
    assert torch.count_nonzero(dense_only["pruned_norms.backbone_bn1.weight"]) == 0
    assert torch.count_nonzero(pruned_only["backbone.bn1.weight"]) == 0
    assert torch.count_nonzero(pruned_only["pruned_norms.backbone_bn1.weight"]) > 0


def test_mask_is_recomputed_at_epoch_start() -> None:
    method = make()
    old = method.prune_mask.clone()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for w in conv_weights(method).values():
            w.mul_(torch.rand(w.shape, generator=gen) * 4)
    assert torch.equal(method.prune_mask, old)  # training steps do not touch it
    method.on_epoch_start(1)
    expected = magnitude_mask(list(conv_weights(method).values()), 0.9)
    assert torch.equal(method.prune_mask, expected)
    assert not torch.equal(method.prune_mask, old)


def test_state_dict_round_trip_holds_the_mask_and_pruned_statistics() -> None:
    method = make()
    x1, x2, idx = views()
    method.train()
    method(x1, x2, idx, 0.0).loss.backward()
    with torch.no_grad():
        for w in conv_weights(method).values():
            w.add_(0.05 * torch.randn_like(w))
    method.update_mask()
    state = method.state_dict()
    assert "prune_mask" in state and "pruned_norms.backbone_bn1.running_mean" in state
    fresh = make("train.seed=5")
    assert not torch.equal(fresh.prune_mask, method.prune_mask)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.prune_mask, method.prune_mask)
    method.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.embed_pruned(x1), method.embed_pruned(x1))


def test_gh_gradients_equal_the_official_two_pass_step() -> None:
    method = make(*GH_NOW).double()
    x1, x2, idx = (v.double() if v.is_floating_point() else v for v in views(seed=1))
    gh = method.gh
    assert gh is not None
    temperature, epoch = method.cfg.method.temperature, 2.0
    method.train()

    method.zero_grad()
    out = method(x1, x2, idx, epoch)
    out.loss.backward()
    one_pass = grads(method)
    assert float(out.logs["gh_weight"]) == 1.0

    # The official SDCLR+GH step (train_cifar.py, method sdclr_GH): pass 1 trains the dense
    # network against the detached pruned output, pass 2 the pruned one against the detached
    # dense output, each with NT-Xent plus the swapped GH cross-entropy.
    method.zero_grad()
    prior, weight = gh.prior.prior(), gh.weight(epoch)
    with torch.no_grad():
        z2_fixed = method.embed_pruned(x2)
    z1 = method.embed(x1)
    first = nt_xent(z1, z2_fixed, temperature) + weight * gh.loss.compute(z1, z2_fixed, prior).loss
    first.backward()
    z1_fixed = z1.detach()
    z2 = method.embed_pruned(x2)
    second = nt_xent(z1_fixed, z2, temperature) + weight * gh.loss.compute(z1_fixed, z2, prior).loss
    second.backward()
    two_pass = grads(method)

    assert torch.allclose(out.loss, first)  # the same objective value
    for name, g in two_pass.items():
        assert torch.allclose(one_pass[name], g, rtol=1e-9, atol=1e-12), name
    assert any(torch.count_nonzero(g) for g in two_pass.values())
    # GH really contributes: without it the gradients differ.
    method.zero_grad()
    nt_xent(method.embed(x1), method.embed_pruned(x2), temperature).backward()
    assert not torch.allclose(
        grads(method)["backbone.conv1.weight"], one_pass["backbone.conv1.weight"]
    )


def test_pruned_forward_matches_functional_call_with_masked_weights() -> None:
    """The pruned forward is the dense module evaluated at ``weight * mask`` (no copy of it)."""
    method = make()
    method.eval()
    x1, _, _ = views()
    params = {name: w * method.conv_masks()[name] for name, w in conv_weights(method).items()}
    with torch.no_grad():
        dense_bn_masked = method.projector(functional_call(method.backbone, params, (x1,)))
        # Same weights; the two differ only through the BatchNorms (identical at init).
        assert torch.allclose(method.embed_pruned(x1), dense_bn_masked, atol=1e-6)


def test_rejects_a_bad_prune_ratio() -> None:
    with pytest.raises(ValueError, match="prune_ratio"):
        make("method.sdclr.prune_ratio=1.0")


@pytest.mark.parametrize("preset", ["sdclr", "sdclr_gh"])
def test_smoke_presets(preset: str) -> None:
    cfg = load_config(REPO / "configs" / "smoke" / f"{preset}.yaml")
    assert cfg.method.name == "sdclr" and cfg.gh.enabled == preset.endswith("_gh")
    assert cfg.method.sdclr.prune_ratio == 0.9


@needs_fashion_mnist
def test_sdclr_gh_kill_and_resume_is_bit_identical(tmp_path: Path) -> None:
    a, _ = pause_resume_states(
        tmp_path,
        "method.name=sdclr",
        "gh.enabled=true",
        "gh.warmup_epochs=1",
        "gh.ramp_epochs=1",
        "gh.num_anchors=10",
    )
    assert not a["model"]["prune_mask"].all()
