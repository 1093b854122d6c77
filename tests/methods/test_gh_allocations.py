"""The allocations beyond the paper, as GHLoss and GHTerm use them: options, queue, rho ramp,
the plan prior and the matched oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoharmony.config import ConfigError, GHConfig, load_config
from geoharmony.gh import GHLoss, GHTerm, swapped_cross_entropy, uniform_structure
from geoharmony.gh.allocation import (
    Allocator,
    NeighbourMemory,
    neighbour_targets,
    partial,
    partial_mass,
    relaxed,
)
from geoharmony.gh.oracles import MatchedOraclePrior, matched_class_shares
from geoharmony.gh.priors import PlanPrior, PowerLawPrior
from geoharmony.gh.sinkhorn import sinkhorn
from tiny_runs import needs_fashion_mnist, pause_resume_states

K, D, B = 6, 8, 10


def embeddings(seed: int, n: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g), torch.randn(n, D, generator=g)


def prior() -> torch.Tensor:
    p = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    return p / p.sum()


@pytest.mark.parametrize("kind", ["relaxed", "partial"])
@pytest.mark.parametrize("weighted", [True, False])
def test_gh_loss_uses_the_chosen_allocation(kind: str, weighted: bool) -> None:
    gh = GHLoss(
        uniform_structure(K, D), allocation=kind, marginal_tau=0.3, partial_weighted=weighted
    )
    gh.rho = 0.6
    z1, z2 = embeddings(0)
    out = gh.compute(z1, z2, prior())
    logits = torch.stack([gh.logits(z1), gh.logits(z2)]).detach()
    if kind == "relaxed":
        want = relaxed(logits, prior(), tau=0.3)
    else:
        found = partial(logits, 0.6, prior(), tau=0.3)
        want = found.plan if weighted else found.targets
    torch.testing.assert_close(out.targets1, want[0])
    torch.testing.assert_close(out.targets2, want[1])
    expected = swapped_cross_entropy(out.logits1, out.logits2, want[0], want[1], 0.1)
    torch.testing.assert_close(out.loss, expected)
    if kind == "partial" and weighted:  # confidence-weighted rows keep the real mass only
        assert float(out.targets1.sum(dim=1).max()) < 1.0 - 1e-3


def test_the_default_allocation_is_the_papers_balanced_plan() -> None:
    gh = GHLoss(uniform_structure(K, D))
    z1, z2 = embeddings(1)
    out = gh.compute(z1, z2, prior())
    plan = sinkhorn(torch.stack([gh.logits(z1), gh.logits(z2)]), prior())
    assert torch.equal(out.targets1, plan[0]) and torch.equal(out.targets2, plan[1])


def test_history_rows_join_the_allocation_but_only_the_batch_gets_targets() -> None:
    gh = GHLoss(uniform_structure(K, D), allocation="relaxed", marginal_tau=0.3)
    z1, z2 = embeddings(2)
    history = torch.rand(2, 3 * B, K) * 2 - 1
    out = gh.compute(z1, z2, prior(), history=history)
    joint = torch.cat([torch.stack([gh.logits(z1), gh.logits(z2)]).detach(), history], dim=1)
    want = relaxed(joint, prior(), tau=0.3)[:, :B]
    torch.testing.assert_close(out.targets1, want[0])
    torch.testing.assert_close(out.targets2, want[1])
    assert out.targets1.shape == (B, K)


def term(**options) -> GHTerm:
    cfg = GHConfig(enabled=True, num_anchors=K, warmup_epochs=2, ramp_epochs=0, **options)
    return GHTerm(cfg, D, num_samples=40, total_epochs=10, batch_size=B)


def test_the_queue_fills_with_the_batches_and_feeds_the_allocation() -> None:
    t = term(allocation="relaxed", queue_batches=2)
    assert t.queue is not None and int(t.queue.filled) == 0
    batches = [embeddings(seed) for seed in range(3)]
    for step, (z1, z2) in enumerate(batches[:2]):
        t(z1, z2, torch.arange(B) + B * step, epoch=2.5)
    assert int(t.queue.filled) == 2
    queued = t.queue.queued()
    assert queued.shape == (2, 2 * B, K)
    # Step 3 allocates over its batch and the two queued ones.
    z1, z2 = batches[2]
    joint = torch.cat([torch.stack([t.loss.logits(z1), t.loss.logits(z2)]).detach(), queued], 1)
    want = relaxed(joint, t.prior.prior(), tau=0.5)[:, :B]
    out = t.loss.compute(z1, z2, t.prior.prior(), history=queued)
    torch.testing.assert_close(out.targets1, want[0])
    # In the warm-up nothing is allocated and nothing is queued.
    fresh = term(allocation="relaxed", queue_batches=2)
    fresh(*batches[0], torch.arange(B), epoch=0.5)
    assert fresh.queue is not None and int(fresh.queue.filled) == 0


def test_partial_mass_ramps_over_the_gh_phase_and_is_logged() -> None:
    t = term(allocation="partial", partial_start=0.2, partial_end=1.0, partial_ramp="linear")
    assert t.partial_mass(2.0) == pytest.approx(0.2)  # end of the warm-up
    assert t.partial_mass(6.0) == pytest.approx(0.6)  # half-way through epochs 2..10
    assert t.partial_mass(10.0) == pytest.approx(1.0)
    _, logs = t(*embeddings(3), torch.arange(B), epoch=6.0)
    assert float(logs["gh_rho"]) == pytest.approx(0.6)
    sigmoid = term(allocation="partial", partial_start=0.1)
    assert sigmoid.partial_mass(4.0) == pytest.approx(partial_mass(0.25, 0.1, 1.0, "sigmoid"))


def test_plan_prior_follows_the_allocations_anchor_masses() -> None:
    est = PlanPrior(3, momentum=0.5)
    torch.testing.assert_close(est.prior(), torch.full((3,), 1 / 3))
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    est.observe_allocation(torch.arange(4), targets)
    mass = torch.tensor([0.5, 0.125, 0.375])
    torch.testing.assert_close(est.prior(), 0.5 * torch.full((3,), 1 / 3) + 0.5 * mass)
    for _ in range(40):
        est.observe_allocation(torch.arange(4), targets)
    torch.testing.assert_close(est.prior(), mass, atol=1e-6, rtol=0)


def test_matched_shares_follow_the_classes_anchors() -> None:
    # Class 0 (share 0.7) is allocated to anchors 0 and 2, class 1 (0.3) to anchor 1; anchor 3
    # sees nothing.
    cooc = torch.tensor([[6.0, 1.0, 2.0, 0.0], [0.0, 5.0, 0.0, 0.0]])
    shares = matched_class_shares(cooc, torch.tensor([0.7, 0.3]))
    torch.testing.assert_close(
        shares, torch.tensor([0.7 * 6 / 8, 0.3, 0.7 * 2 / 8, 0.0]), atol=1e-6, rtol=0
    )
    # One anchor per class: the Hungarian matching decides, even against a larger count.
    cooc = torch.tensor([[5.0, 4.0], [6.0, 0.0]])
    torch.testing.assert_close(
        matched_class_shares(cooc, torch.tensor([0.2, 0.8])), torch.tensor([0.8, 0.2])
    )


def test_the_matched_oracle_puts_true_shares_on_the_allocated_anchors() -> None:
    labels = [0] * 6 + [1] * 2  # true shares 0.75 / 0.25
    est = MatchedOraclePrior(8, 3, labels, warmup_momentum=0.0)
    # Before any allocation: the bank's argmax decides (class 0 on anchor 2, class 1 on 0).
    logits = torch.zeros(8, 3)
    logits[:6, 2], logits[6:, 0] = 1.0, 1.0
    est.update(torch.arange(8), logits)
    est.refresh()
    torch.testing.assert_close(est.prior(), torch.tensor([0.25, 0.0, 0.75]))
    # Then the allocation's targets: class 0 moves to anchor 1.
    targets = torch.zeros(8, 3)
    targets[:6, 1], targets[6:, 0] = 1.0, 1.0
    est.observe_allocation(torch.arange(8), targets)
    est.refresh()
    torch.testing.assert_close(est.prior(), torch.tensor([0.25, 0.75, 0.0]))
    assert float(est.cooccurrence.sum()) == 0  # reset for the next interval
    with pytest.raises(ValueError, match="at least the number of classes"):
        MatchedOraclePrior(3, 2, [0, 1, 2])


def test_allocation_options_are_checked_where_configs_are_read() -> None:
    with pytest.raises(ConfigError, match=r"gh\.allocation='sinkhorn2'"):
        load_config(None, ["gh.allocation=sinkhorn2"])
    with pytest.raises(ConfigError, match=r"gh\.partial_targets"):
        load_config(None, ["gh.partial_targets=hard"])
    with pytest.raises(ValueError, match="allocation must be one of"):
        GHLoss(uniform_structure(K, D), allocation="sinkhorn2")


@needs_fashion_mnist
def test_a_queued_partial_run_resumes_bit_identically(tmp_path: Path) -> None:
    straight, _ = pause_resume_states(
        tmp_path,
        "gh.enabled=true",
        "gh.warmup_epochs=0",
        "gh.ramp_epochs=0",
        "gh.num_anchors=10",
        "gh.allocation=partial",
        "gh.queue_batches=2",
        "gh.prior=plan",
    )
    assert int(straight["model"]["gh.queue.filled"]) == 2
    assert not torch.equal(straight["model"]["gh.prior.current"], torch.full((10,), 0.1))


def test_neighbour_targets_average_the_nearest_rows_without_oneself() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])
    near = neighbour_targets(logits, targets, neighbours=2)
    # Row 0's two nearest are rows 1 and 2; row 3's are rows 2 and 1 (cosine).
    torch.testing.assert_close(near[0], (targets[1] + targets[2]) / 2)
    torch.testing.assert_close(near[3], (targets[2] + targets[1]) / 2)
    # Batched leading dims are independent problems.
    both = neighbour_targets(torch.stack([logits, logits.flip(0)]), torch.stack([targets] * 2), 2)
    torch.testing.assert_close(both[0], near)


def test_affinity_pulls_an_ambiguous_sample_to_its_neighbours_anchor() -> None:
    # Five samples sit clearly on anchor 0 and five on anchor 1; sample 10 is between, nearer
    # to the anchor-1 group's direction in angle but its five nearest rows are the anchor-0
    # group's (they are the only ones close to it).
    g = torch.Generator().manual_seed(0)
    group0 = torch.tensor([0.9, -0.2, 0.0]) + 0.01 * torch.randn(5, 3, generator=g)
    group1 = torch.tensor([-0.9, 0.3, 0.0]) + 0.01 * torch.randn(5, 3, generator=g)
    ambiguous = torch.tensor([[0.05, 0.1, 0.0]])
    logits = torch.cat([group0, group1, ambiguous])[None]  # [1, 11, 3]
    plain = Allocator("relaxed", tau=0.3)
    pulled = Allocator("relaxed", tau=0.3, affinity=1.0, neighbours=3)
    before = plain(logits)[0, 10]
    after = pulled(logits)[0, 10]
    nearest = neighbour_targets(logits, plain(logits), 3)[0, 10]
    favoured = int(nearest.argmax())
    assert after[favoured] > before[favoured] + 0.05
    # Without affinity the second pass is skipped: the plain result, exactly.
    assert torch.equal(Allocator("relaxed", tau=0.3, affinity=0.0)(logits), plain(logits))


def test_the_power_law_prior_is_fixed_and_long_tailed() -> None:
    est = PowerLawPrior(4, exponent=1.0)
    want = torch.tensor([1, 1 / 2, 1 / 3, 1 / 4]) / (1 + 1 / 2 + 1 / 3 + 1 / 4)
    torch.testing.assert_close(est.prior(), want)
    est.update(torch.arange(2), torch.rand(2, 4))
    est.observe_allocation(torch.arange(2), torch.rand(2, 4))
    est.refresh()
    torch.testing.assert_close(est.prior(), want)
    torch.testing.assert_close(PowerLawPrior(3, exponent=0.0).prior(), torch.full((3,), 1 / 3))


def test_neighbour_memory_averages_remembered_neighbours_but_not_oneself() -> None:
    memory = NeighbourMemory(num_samples=5, num_anchors=2, neighbours=2)
    logits = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    targets = torch.eye(2)[[0, 0, 1, 1, 1]]
    current = logits[[0]].unsqueeze(0)  # [V=1, B=1, K]
    # Nothing remembered yet: no bias.
    assert torch.equal(memory.neighbour_targets(current, torch.tensor([0])), torch.zeros(1, 1, 2))
    memory.store(torch.arange(5), logits, targets)
    # Sample 0's two nearest remembered samples are 1 and 2 (itself excluded).
    torch.testing.assert_close(
        memory.neighbour_targets(current, torch.tensor([0])),
        ((targets[1] + targets[2]) / 2)[None, None],
    )
    # A sample not stored is no one's neighbour.
    partial_memory = NeighbourMemory(5, 2, neighbours=2)
    partial_memory.store(torch.tensor([2, 3]), logits[[2, 3]], targets[[2, 3]])
    got = partial_memory.neighbour_targets(current, torch.tensor([0]))
    torch.testing.assert_close(got, ((targets[2] + targets[3]) / 2)[None, None])


def test_memory_affinity_biases_the_allocation_once_samples_are_remembered() -> None:
    t = term(allocation="relaxed", affinity=2.0, affinity_source="memory", affinity_neighbours=3)
    plain = term(allocation="relaxed")
    assert t.memory is not None and t.loss.allocator.affinity == 0.0  # a bias, not a 2nd pass
    z1, z2 = embeddings(5)
    first, _ = t(z1, z2, torch.arange(B), epoch=2.5)
    torch.testing.assert_close(first, plain(z1, z2, torch.arange(B), epoch=2.5)[0])  # empty
    assert int(t.memory.seen.sum()) == B
    z1, z2 = embeddings(6)
    second, _ = t(z1, z2, torch.arange(B, 2 * B), epoch=2.6)
    assert not torch.allclose(second, plain(z1, z2, torch.arange(B, 2 * B), epoch=2.6)[0])
