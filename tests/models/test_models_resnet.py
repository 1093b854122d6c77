"""ResNet backbones: torchvision state-dict compatibility, shapes, options, registry."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from geoharmony.models import (
    BACKBONES,
    ResNet,
    build_backbone,
    cifar_resnet18,
    imagenet_resnet18,
    imagenet_resnet50,
)
from tiny_runs import randomise_batchnorm


@pytest.mark.parametrize(
    ("ours_fn", "tv_fn"),
    [
        (imagenet_resnet18, torchvision.models.resnet18),
        (imagenet_resnet50, torchvision.models.resnet50),
    ],
)
def test_state_dict_loads_strictly_into_torchvision(ours_fn, tv_fn) -> None:
    ours = ours_fn(in_channels=3, seed=0)
    randomise_batchnorm(ours, seed=1)
    tv = tv_fn()
    state = dict(ours.state_dict())
    # The only keys torchvision has beyond ours are its classifier's.
    assert set(tv.state_dict()) - set(state) == {"fc.weight", "fc.bias"}
    state["fc.weight"] = torch.zeros_like(tv.fc.weight)
    state["fc.bias"] = torch.zeros_like(tv.fc.bias)
    tv.load_state_dict(state, strict=True)
    assert ours.out_dim == tv.fc.in_features
    tv.fc = nn.Identity()

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ours.eval()
    tv.eval()
    with torch.no_grad():
        f_ours, f_tv = ours(x), tv(x)
    assert f_ours.shape == (2, ours.out_dim)
    torch.testing.assert_close(f_ours, f_tv, rtol=0, atol=0)


def test_torchvision_weights_load_back() -> None:
    tv = torchvision.models.resnet18()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    imagenet_resnet18().load_state_dict(state, strict=True)


@pytest.mark.parametrize("width", [0.25, 1.0])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_cifar_resnet18_shapes(width: float, in_channels: int) -> None:
    model = cifar_resnet18(width=width, in_channels=in_channels)
    assert model.out_dim == round(512 * width)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.in_channels == in_channels
    assert isinstance(model.maxpool, nn.Identity)
    assert model.layer1[0].conv1.out_channels == round(64 * width)
    x = torch.randn(3, in_channels, 32, 32)
    maps = model.forward_maps(x)
    # No max-pool and a stride-1 stem: 32 -> 32 -> 16 -> 8 -> 4.
    assert maps.shape == (3, model.out_dim, 4, 4)
    assert model(x).shape == (3, model.out_dim)


def test_channels_last_matches_and_is_kept() -> None:
    model = cifar_resnet18(width=0.25, seed=0).eval()
    randomise_batchnorm(model, seed=3)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    model_cl = cifar_resnet18(width=0.25).eval()
    model_cl.load_state_dict(model.state_dict())
    model_cl = model_cl.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        maps = model_cl.forward_maps(x_cl)
        out = model_cl(x_cl)
    assert maps.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_zero_init_residual_and_seed() -> None:
    model = imagenet_resnet50(zero_init_residual=True)
    for block in (*model.layer1, *model.layer4):
        assert torch.count_nonzero(block.bn3.weight) == 0
        assert torch.all(block.bn2.weight == 1)
    small = cifar_resnet18(width=0.25, zero_init_residual=True)
    assert torch.count_nonzero(small.layer2[1].bn2.weight) == 0

    a, b, c = (cifar_resnet18(width=0.25, seed=s) for s in (7, 7, 8))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_build_backbone_registry() -> None:
    assert set(BACKBONES) == {"cifar_resnet18", "resnet18", "resnet50"}
    model = build_backbone("cifar_resnet18", width=0.5, in_channels=1)
    assert isinstance(model, ResNet)
    assert model.out_dim == 256 and model.conv1.in_channels == 1
    assert build_backbone("resnet50").out_dim == 2048
    with pytest.raises(ValueError, match=r"cifar_resnet18, resnet18, resnet50"):
        build_backbone("resnet101")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width"):
        cifar_resnet18(width=0)
    with pytest.raises(ValueError, match="in_channels"):
        cifar_resnet18(in_channels=0)
