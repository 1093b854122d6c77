import pytest
import torch

from geoharmony.config import ConfigError
from geoharmony.configure import load_config
from geoharmony.gh.priors import BankPrior, StreamingPrior, effective_number


def test_bank_update_is_vectorised_ema() -> None:
    bank = BankPrior(num_samples=6, num_anchors=3, warmup_momentum=0.9, momentum=0.5)
    logits = torch.tensor([[1.0, 0, 0], [0, 2.0, 0]])
    bank.update(torch.tensor([4, 1]), logits)
    expected = torch.zeros(6, 3)
    expected[4] = 0.1 * logits[0]
    expected[1] = 0.1 * logits[1]
    torch.testing.assert_close(bank.bank, expected)
    bank.set_warmup(False)
    bank.update(torch.tensor([4]), torch.tensor([[0.0, 0, 4.0]]))
    expected[4] = 0.5 * expected[4] + 0.5 * torch.tensor([0.0, 0, 4.0])
    torch.testing.assert_close(bank.bank, expected)


def test_bank_histogram_ignores_unseen_rows_and_adds_floor() -> None:
    bank = BankPrior(num_samples=10, num_anchors=4, warmup_momentum=0.0)
    torch.testing.assert_close(bank.prior(), torch.full((4,), 0.25))
    # Three samples vote for anchor 2, one for anchor 3; six rows are never seen.
    logits = torch.tensor([[0, 0, 1.0, 0]] * 3 + [[0, 0, 0, 1.0]])
    bank.update(torch.tensor([0, 1, 2, 3]), logits)
    assert torch.equal(bank.prior(), torch.full((4,), 0.25)), "prior only moves on refresh"
    bank.refresh()
    torch.testing.assert_close(bank.prior(), torch.tensor([0.0, 0.0, 0.75, 0.25]))
    bank.floor = 1.0
    bank.refresh()
    torch.testing.assert_close(bank.prior(), torch.tensor([1.0, 1.0, 4.0, 2.0]) / 8)


def test_bank_state_dict_round_trip() -> None:
    a = BankPrior(num_samples=5, num_anchors=3)
    a.update(torch.arange(5), torch.randn(5, 3))
    a.refresh()
    b = BankPrior(num_samples=5, num_anchors=3)
    b.load_state_dict(a.state_dict())
    for name in ("bank", "seen", "current"):
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_bank_rejects_bad_indices_and_shapes() -> None:
    bank = BankPrior(num_samples=5, num_anchors=3)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        bank.update(torch.tensor([5]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        bank.update(torch.tensor([0]), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="momentum"):
        BankPrior(5, 3, momentum=1.0)


def test_streaming_prior_tracks_soft_assignments() -> None:
    est = StreamingPrior(num_anchors=3, momentum=0.5, temperature=1e-3)
    logits = torch.tensor([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]])
    for _ in range(60):
        est.update(torch.arange(4), logits)
    torch.testing.assert_close(est.prior(), torch.tensor([0.75, 0.25, 0.0]), atol=1e-6, rtol=0)
    copy = StreamingPrior(num_anchors=3)
    copy.load_state_dict(est.state_dict())
    assert torch.equal(copy.prior(), est.prior())


def test_effective_number() -> None:
    assert effective_number(torch.full((5,), 0.2)) == pytest.approx(5)
    assert effective_number(torch.tensor([1.0, 0, 0])) == pytest.approx(1)


@pytest.mark.parametrize("retired", ["uniform", "mixture", "plan", "powerlaw"])
def test_retired_priors_are_refused_by_name(retired: str) -> None:
    with pytest.raises(ConfigError, match=rf"gh.prior.name={retired}: this prior was retired"):
        load_config(None, [f"gh.prior={retired}"])
