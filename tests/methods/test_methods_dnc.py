"""DnC (re-implementation from the paper): stages, clustering, routing, distillation, resume."""

from __future__ import annotations

import copy
import json
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from geoharmony.cli import main
from geoharmony.config import ConfigError
from geoharmony.configure import load_config
from geoharmony.engine.checkpoint import list_checkpoints, load_checkpoint
from geoharmony.methods import DataInfo, TrainContext, build_method
from geoharmony.methods.dnc import (
    BASE,
    DISTILL,
    EXPERTS,
    DnC,
    StagePlan,
    distill_regression_loss,
)
from tiny_runs import REPO, TINY, needs_fashion_mnist

N, BATCH = 24, 16
UNIT = [
    "method.name=dnc",
    "model.width=0.0625",
    "model.projector_hidden=32",
    "model.projector_dim=16",
    "optim.epochs=4",  # base 2, experts 1, distillation 1
    f"optim.batch_size={BATCH}",
    "method.dnc.num_experts=2",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Single-threaded: fast for these tiny models on a shared CPU, and bit-reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def stand_in_features(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What the trainer's ``pretrain_features`` does: ``module`` in eval mode, no gradients."""
    was_training = module.training
    module.eval()
    try:
        return module(images).float()
    finally:
        module.train(was_training)


def make_method(*extra: str) -> tuple[DnC, torch.Tensor]:
    """A tiny DnC bound to a stand-in TrainContext over ``N`` fixed images in two groups."""
    cfg = load_config(None, [*UNIT, *extra])
    method = build_method(cfg, DataInfo(N, 1, 10))
    assert isinstance(method, DnC)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(N, 1, 28, 28, generator=gen)
    ramp = torch.linspace(-3.0, 3.0, 28)
    images[: N // 2] += ramp.view(1, 1, 1, 28)  # two groups for k-means: left-right ramps
    images[N // 2 :] += ramp.view(1, 1, 28, 1)  # and top-bottom ramps
    method.bind(
        TrainContext(
            lambda module: stand_in_features(module, images), lambda: iter(()), nullcontext
        )
    )
    return method, images


def views_of(images: torch.Tensor, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = images[indices]
    return (
        x + 0.1 * torch.randn(x.shape, generator=gen),
        x + 0.1 * torch.randn(x.shape, generator=gen),
    )


def train_epoch(method: DnC, optimizer: torch.optim.Optimizer, images, epoch: int) -> None:
    method.train()
    method.on_epoch_start(epoch)
    for step in range(2):
        indices = torch.randperm(N, generator=torch.Generator().manual_seed(10 * epoch + step))
        indices = indices[:BATCH]
        out = method(*views_of(images, indices, epoch * 100 + step), indices, epoch + step / 2)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    method.on_epoch_end(epoch)


def sgd(method: DnC) -> torch.optim.Optimizer:
    return torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ----- stage plan and the regression loss ------------------------------------------------------
def test_stage_plan_rounds_fractions_to_whole_epochs() -> None:
    plan = StagePlan.from_config(load_config(None, ["optim.epochs=8"]))  # defaults 0.5 / 0.25
    assert (plan.base_epochs, plan.expert_epochs, plan.distill_epochs) == (4, 2, 2)
    assert [plan.stage(e) for e in range(8)] == [BASE] * 4 + [EXPERTS] * 2 + [DISTILL] * 2
    plan = StagePlan.from_config(
        load_config(None, ["optim.epochs=5", "method.dnc.expert_epochs_fraction=0"])
    )
    assert (plan.base_epochs, plan.expert_epochs, plan.distill_epochs) == (3, 0, 2)  # 2.5 -> 3
    with pytest.raises(ValueError, match="at least one base and one distillation epoch"):
        StagePlan.from_config(load_config(None, ["optim.epochs=2"]))  # 1 + 1 + 0
    with pytest.raises(ValueError, match="base_epochs_fraction"):
        StagePlan.from_config(load_config(None, ["method.dnc.base_epochs_fraction=1.5"]))


def test_distill_regression_loss_hand_case() -> None:
    pred = torch.tensor([[1.0, 0.0], [3.0, 4.0], [2.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 5.0], [6.0, 8.0], [1.0, 1.0]], requires_grad=True)
    loss = distill_regression_loss(pred, target)
    # ||p/|p| - t/|t|||^2 = 2 - 2 cos: orthogonal 2, parallel 0, 45 degrees 2 - sqrt(2).
    expected = torch.tensor([2.0, 0.0, 2.0 - math.sqrt(2.0)])
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    assert target.grad is None  # the teacher is a constant
    assert pred.grad is not None and pred.grad[0].abs().sum() > 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="student_init"):
        make_method("method.dnc.student_init=warm")
    with pytest.raises(ConfigError, match=r"method\.dnc\.num_experts=0 must be at least 1"):
        make_method("method.dnc.num_experts=0")  # refused when the config is read
    # No more images per step than experts: found before the method is built.
    cfg = load_config(None, [*UNIT, "method.dnc.num_experts=16"])
    problems = DnC.data_problems(cfg, DataInfo(64, 1))
    assert any(
        "more images per step and process (16) than method.dnc.num_experts (16)" in p
        for p in problems
    )


# ----- the stages ------------------------------------------------------------------------------
def test_stages_switch_by_epoch_and_the_forward_checks_them() -> None:
    method, images = make_method()
    opt = sgd(method)
    indices = torch.arange(BATCH)
    with pytest.raises(RuntimeError, match="experts stage but the model is in the base stage"):
        method(*views_of(images, indices, 0), indices, 2.0)
    train_epoch(method, opt, images, 0)
    assert method.current_stage == BASE and int(method.stage) == BASE
    train_epoch(method, opt, images, 1)
    assert method.current_stage == EXPERTS and int(method.stage) == EXPERTS
    train_epoch(method, opt, images, 2)
    assert method.current_stage == DISTILL and int(method.stage) == DISTILL
    # Frozen teachers stay in eval mode through the trainer's per-epoch train() calls.
    method.train()
    assert method.backbone.training and not method.base_teacher.training
    assert not any(m.training for m in method.experts.modules())
    out = method(*views_of(images, indices, 1), indices, 3.5)
    assert int(out.logs["dnc_stage"]) == DISTILL and "distill_loss" in out.logs
    # The host copy of the stage follows a loaded state.
    fresh, _ = make_method()
    fresh.load_state_dict(method.state_dict())
    assert fresh.current_stage == DISTILL


def test_base_stage_is_simclr() -> None:
    method, images = make_method()
    simclr = build_method(load_config(None, [*UNIT, "method.name=simclr"]), DataInfo(N, 1, 10))
    assert_same_state(method.backbone, simclr.backbone)
    indices = torch.arange(BATCH)
    views = views_of(images, indices, 0)
    a, b = method(*views, indices, 0.5), simclr(*views, indices, 0.5)
    assert torch.equal(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    grads = zip(method.backbone.named_parameters(), simclr.backbone.parameters(), strict=True)
    for (name, p), q in grads:
        assert torch.equal(p.grad, q.grad), name


def test_clustering_and_expert_initialisation_at_the_switch() -> None:
    method, images = make_method()
    opt = sgd(method)
    train_epoch(method, opt, images, 0)
    before_switch = state_of(method.expert(0).backbone)
    assert (method.assignments == -1).all()
    train_epoch(method, opt, images, 1)  # ends the base stage: k-means, experts start
    # Oracle: scikit-learn k-means on the base's L2-normalised eval-mode features.
    method.eval()
    with torch.no_grad():
        feats = F.normalize(method.backbone(images), dim=1).double().numpy()
    expected = KMeans(n_clusters=2, n_init=3, random_state=0).fit(feats).labels_
    assert torch.equal(method.assignments, torch.from_numpy(expected).long())
    assert sorted(torch.bincount(method.assignments).tolist()) == [N // 2, N // 2]
    # Experts and the base teacher equal the base (weights and BatchNorm statistics), which
    # itself moved away from the initial copies during the base stage.
    assert not torch.equal(before_switch["conv1.weight"], method.backbone.conv1.weight)
    for c in range(2):
        assert_same_state(method.expert(c).backbone, method.backbone)
        assert_same_state(method.expert(c).projector, method.projector)
    assert_same_state(method.base_teacher, method.backbone)


def test_expert_stage_routes_gradients_by_cluster_and_freezes_the_base() -> None:
    method, images = make_method()
    opt = sgd(method)  # carries momentum buffers of the base into the expert stage
    train_epoch(method, opt, images, 0)
    train_epoch(method, opt, images, 1)
    method.train()
    method.on_epoch_start(2)
    base_before = state_of(method.backbone), state_of(method.projector)
    indices = torch.tensor([0, 1, 2, 3, 4, 12, 13, 14, 15, 16, 17, 5])
    view1, view2 = views_of(images, indices, 7)

    def expert_grads(v1: torch.Tensor, v2: torch.Tensor) -> list[list[torch.Tensor]]:
        opt.zero_grad(set_to_none=True)
        method(v1, v2, indices, 2.0).loss.backward()
        return [[p.grad.clone() for p in method.expert(c).parameters()] for c in range(2)]

    grads = expert_grads(view1, view2)
    for name, p in method.named_parameters():
        if not name.startswith("experts."):
            assert p.grad is None, name  # base, base teacher, heads: nothing
    assert all(g.abs().sum() > 0 for c in range(2) for g in grads[c][:1])
    # Changing the images of cluster 1 leaves expert 0's gradient bit-identical.
    cluster = method.assignments[indices]
    other = (cluster == 1).view(-1, 1, 1, 1)
    grads2 = expert_grads(view1 + 0.5 * other, view2 - 0.5 * other)
    for g, g2 in zip(grads[0], grads2[0], strict=True):
        assert torch.equal(g, g2)
    assert not all(torch.equal(g, g2) for g, g2 in zip(grads[1], grads2[1], strict=True))
    # An optimizer step (momentum, weight decay) leaves the frozen base untouched.
    opt.step()
    assert all(torch.equal(v, method.backbone.state_dict()[k]) for k, v in base_before[0].items())
    assert all(torch.equal(v, method.projector.state_dict()[k]) for k, v in base_before[1].items())


def test_distillation_loss_and_gradients() -> None:
    method, images = make_method("method.dnc.distill_weight=0.5")
    opt = sgd(method)
    for epoch in range(3):
        train_epoch(method, opt, images, epoch)
    method.train()
    method.on_epoch_start(3)
    teachers = copy.deepcopy((method.base_teacher, method.experts))
    indices = torch.tensor([0, 1, 2, 3, 12, 13, 14, 15])
    view1, view2 = views_of(images, indices, 3)
    opt.zero_grad(set_to_none=True)
    out = method(view1, view2, indices, 3.0)
    out.loss.backward()
    # Independent recomputation: per view, reg(head_0(h), base(x)) + reg(head_1+c(h), expert_c(x)).
    views = torch.cat([view1, view2])
    with torch.no_grad():
        # Train mode: each view's own batch statistics, as in the step (official per-view BN).
        h = torch.cat([method.backbone(view1), method.backbone(view2)])
        cluster = method.assignments[indices].repeat(2)
        base = distill_regression_loss(method.head(0)(h), method.base_teacher(views))
        expert = torch.stack(
            [
                distill_regression_loss(
                    method.head(1 + int(c))(h[i : i + 1]),
                    method.expert(int(c)).backbone(views[i : i + 1]),  # eval mode: per image
                )[0]
                for i, c in enumerate(cluster)
            ]
        )
    torch.testing.assert_close(out.logs["distill_base"], base.mean())
    torch.testing.assert_close(out.logs["distill_expert"], expert.mean())
    torch.testing.assert_close(out.loss, out.logs["ssl_loss"] + 0.5 * (base.mean() + expert.mean()))
    # Gradients reach the student and every head in use, never a teacher.
    for name, p in method.named_parameters():
        assert (p.grad is not None) == name.startswith(("backbone.", "projector.", "distill_")), (
            name
        )
    # Teachers ran in eval mode: their BatchNorm statistics did not move.
    assert_same_state(method.base_teacher, teachers[0])
    assert_same_state(method.experts, teachers[1])


def test_evaluation_features_are_the_students() -> None:
    method, images = make_method()
    opt = sgd(method)
    for epoch in range(4):
        train_epoch(method, opt, images, epoch)
    method.eval()
    with torch.no_grad():
        feats = method.features(images)
        assert torch.equal(feats, method.backbone(images))
        assert not torch.allclose(feats, method.base_teacher(images))
        for c in range(2):
            assert not torch.allclose(feats, method.expert(c).backbone(images))


def test_scratch_student_restarts_from_the_initial_weights() -> None:
    method, images = make_method("method.dnc.student_init=scratch")
    initial, _ = make_method("method.dnc.student_init=scratch")
    opt = sgd(method)
    for epoch in range(3):
        train_epoch(method, opt, images, epoch)
    assert_same_state(method.backbone, initial.backbone)
    assert_same_state(method.projector, initial.projector)
    assert not torch.equal(method.base_teacher.conv1.weight, initial.backbone.conv1.weight)


# ----- real runs: resume inside every stage, metrics -------------------------------------------
DNC_GH = str(REPO / "configs" / "smoke" / "dnc_gh.yaml")
RUN = [
    *TINY,
    "data.n_max=60",
    "optim.epochs=6",  # base 2, experts 2, distillation 2
    "method.dnc.base_epochs_fraction=0.34",
    "method.dnc.expert_epochs_fraction=0.33",
]


def pretrain(out: Path, *flags: str) -> int:
    return main(["pretrain", "--config", DNC_GH, "--output", str(out), *flags, *RUN])


@needs_fashion_mnist
def test_runs_paused_in_every_stage_resume_bit_identically(tmp_path: Path) -> None:
    straight, paused = tmp_path / "straight", tmp_path / "paused"
    assert pretrain(straight) == 0  # with the final evaluation
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["method"] == "dnc" and metrics["gh"] is True
    linear = metrics["probes"]["linear"]
    assert 0 <= linear["avg"] <= 100 and len(linear["per_class"]) == 10
    for stop in ("1", "3", "5"):  # inside the base, expert and distillation stages
        assert pretrain(paused, "--no-eval", "--stop-after", stop) == 0
        assert load_checkpoint(list_checkpoints(paused / "checkpoints")[-1])["epoch"] == int(stop)
    assert pretrain(paused, "--no-eval") == 0
    a = load_checkpoint(list_checkpoints(straight / "checkpoints")[-1])
    b = load_checkpoint(list_checkpoints(paused / "checkpoints")[-1])
    assert a["epoch"] == b["epoch"] == 6 and a["global_step"] == b["global_step"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    model = b["model"]
    assert int(model["stage"]) == DISTILL and (model["assignments"] >= 0).all()
    assert set(model["assignments"].tolist()) == {0, 1}
    # Each stage really trained its part: experts left the base, the student left its teacher.
    for part in ("experts.0.backbone", "experts.1.backbone", "backbone"):
        assert not torch.equal(model[f"{part}.conv1.weight"], model["base_teacher.conv1.weight"])
    assert model["gh.prior.seen"].any()
