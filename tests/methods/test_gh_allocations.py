"""The allocations beyond the paper, as GHLoss and GHTerm use them: options, rho ramp, the
matched oracle, a resumable run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoharmony.config import ConfigError, GHConfig
from geoharmony.configure import load_config
from geoharmony.gh import GHLoss, GHTerm, swapped_cross_entropy, uniform_structure
from geoharmony.gh.allocation import partial, partial_mass, relaxed
from geoharmony.gh.options import AllocationOptions
from geoharmony.gh.oracles import MatchedOraclePrior, matched_class_shares
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
    targets = "weighted" if weighted else "renormalised"
    options = AllocationOptions(name=kind, tau=0.3, partial_targets=targets)
    gh = GHLoss(uniform_structure(K, D), allocation=options)
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


def term(**allocation) -> GHTerm:
    options = AllocationOptions(**allocation)
    cfg = GHConfig(enabled=True, num_anchors=K, warmup_epochs=2, ramp_epochs=0, allocation=options)
    return GHTerm(cfg, D, num_samples=40, total_epochs=10)


def test_partial_mass_ramps_over_the_gh_phase_and_is_logged() -> None:
    t = term(name="partial", partial_start=0.2, partial_end=1.0, partial_ramp="linear")
    assert t.partial_mass(2.0) == pytest.approx(0.2)  # end of the warm-up
    assert t.partial_mass(6.0) == pytest.approx(0.6)  # half-way through epochs 2..10
    assert t.partial_mass(10.0) == pytest.approx(1.0)
    _, logs = t(*embeddings(3), torch.arange(B), epoch=6.0)
    assert float(logs["gh_rho"]) == pytest.approx(0.6)
    sigmoid = term(name="partial", partial_start=0.1)
    assert sigmoid.partial_mass(4.0) == pytest.approx(partial_mass(0.25, 0.1, 1.0, "sigmoid"))


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
    with pytest.raises(ConfigError, match=r"gh\.allocation\.name='sinkhorn2'"):
        load_config(None, ["gh.allocation.name=sinkhorn2"])
    with pytest.raises(ConfigError, match=r"gh\.allocation\.name='sinkhorn2'"):
        load_config(None, ["gh.allocation=sinkhorn2"])  # the name, as earlier versions set it
    with pytest.raises(ConfigError, match=r"gh\.allocation\.partial_targets"):
        load_config(None, ["gh.partial_targets=hard"])
    with pytest.raises(ConfigError, match=r"gh\.allocation\.tau=0\.0 must be positive"):
        load_config(None, ["gh.allocation.tau=0"])
    with pytest.raises(ValueError, match=r"allocation\.name must be one of"):
        GHLoss(uniform_structure(K, D), allocation=AllocationOptions(name="sinkhorn2"))


@needs_fashion_mnist
def test_a_partial_run_with_a_live_prior_resumes_bit_identically(tmp_path: Path) -> None:
    straight, _ = pause_resume_states(
        tmp_path,
        "gh.enabled=true",
        "gh.warmup_epochs=0",
        "gh.ramp_epochs=0",
        "gh.num_anchors=10",
        "gh.allocation.name=partial",
        "gh.prior.name=streaming",
    )
    assert not torch.equal(straight["model"]["gh.prior.current"], torch.full((10,), 0.1))
