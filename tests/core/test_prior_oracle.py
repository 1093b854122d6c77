"""The diagnostic oracle prior: true class shares handed to anchors by the bank's vote rank."""

import pytest
import torch

from geoharmony.config import GHConfig
from geoharmony.configure import load_config
from geoharmony.gh.options import PriorOptions
from geoharmony.gh.oracles import OraclePrior
from geoharmony.gh.term import build_prior


def _votes(est: OraclePrior, anchors: list[int]) -> None:
    """One sample per entry of ``anchors``, each voting for that anchor."""
    logits = torch.nn.functional.one_hot(torch.tensor(anchors), est.num_anchors).float()
    est.update(torch.arange(len(anchors)), logits)


def test_largest_share_goes_to_the_most_voted_anchor() -> None:
    est = OraclePrior(num_samples=6, num_anchors=3, class_counts=[10, 60, 30], warmup_momentum=0)
    _votes(est, [2, 2, 2, 0, 0, 1])  # anchor 2 most voted, then 0, then 1
    est.refresh()
    torch.testing.assert_close(est.prior(), torch.tensor([0.3, 0.1, 0.6]))


def test_more_anchors_than_classes_pads_with_zero_and_floor_lifts_it() -> None:
    est = OraclePrior(num_samples=4, num_anchors=4, class_counts=[3, 1], warmup_momentum=0)
    _votes(est, [1, 1, 3, 1])
    est.refresh()
    torch.testing.assert_close(est.prior(), torch.tensor([0.0, 0.75, 0.0, 0.25]))
    est.floor = 1.0  # counts: shares x 4 seen rows, plus one per anchor
    est.refresh()
    torch.testing.assert_close(est.prior(), torch.tensor([1.0, 4.0, 1.0, 2.0]) / 8)


def test_fewer_anchors_than_classes_keeps_the_largest_shares() -> None:
    est = OraclePrior(num_samples=2, num_anchors=2, class_counts=[1, 6, 2], warmup_momentum=0)
    _votes(est, [0, 1])  # a tie: stable order, anchor 0 first
    est.refresh()
    torch.testing.assert_close(est.prior(), torch.tensor([0.75, 0.25]))


def test_state_dict_and_bad_counts() -> None:
    est = OraclePrior(num_samples=3, num_anchors=2, class_counts=[2, 1], warmup_momentum=0)
    _votes(est, [1, 1, 0])
    est.refresh()
    other = OraclePrior(num_samples=3, num_anchors=2, class_counts=[1, 1])
    other.load_state_dict(est.state_dict())
    assert torch.equal(other.prior(), est.prior()) and torch.equal(
        other.true_shares, est.true_shares
    )
    for bad in ([], [1, -1], [0, 0]):
        with pytest.raises(ValueError, match="class_counts"):
            OraclePrior(3, 2, class_counts=bad)


def test_is_a_gh_prior_choice_that_needs_labels() -> None:
    cfg = load_config(None, ["gh.prior=oracle", "gh.num_anchors=3"])
    est = build_prior(cfg.gh, num_samples=5, class_counts=(5, 3, 1))
    assert isinstance(est, OraclePrior)
    with pytest.raises(ValueError, match="class counts"):
        build_prior(GHConfig(prior=PriorOptions(name="oracle")), 5)
