"""The mixture prior (EM on the bank) tracks an imbalanced prior where the argmax histogram
does not: synthetic logit rows drawn around the anchors from a known long-tailed mixture."""

import pytest
import torch

from geoharmony.config import GHConfig, load_config
from geoharmony.gh.mixture import MixturePrior, fit_vmf_mixture_weights
from geoharmony.gh.priors import BankPrior, effective_number
from geoharmony.gh.term import build_prior

K = 10
COUNTS = [int(1000 * 100 ** (-c / (K - 1))) for c in range(K)]  # 1000 -> 10, rho 100


def _rows(noise: float, seed: int = 0, counts: list[int] = COUNTS) -> tuple[torch.Tensor, int]:
    """Centred unit one-hot means plus isotropic Gaussian noise, class c drawn counts[c] times."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    mu = torch.eye(K) - 1.0 / K
    mu = mu / mu.norm(dim=1, keepdim=True)
    return mu[labels] + noise * torch.randn(len(labels), K, generator=g), len(labels)


def _fit(cls: type[BankPrior], rows: torch.Tensor) -> torch.Tensor:
    est = cls(rows.shape[0], K, warmup_momentum=0.0)
    est.update(torch.arange(rows.shape[0]), rows)
    est.refresh()
    return est.prior()


def test_clean_rows_give_the_exact_prior() -> None:
    rows, n = _rows(noise=0.05)
    truth = torch.tensor(COUNTS, dtype=torch.float64) / n
    torch.testing.assert_close(_fit(MixturePrior, rows).double(), truth, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_tracks_imbalance_where_the_argmax_histogram_flattens(seed: int) -> None:
    rows, n = _rows(noise=0.4, seed=seed)
    true_eff = effective_number(torch.tensor(COUNTS, dtype=torch.float64))
    assert true_eff == pytest.approx(5.16, abs=0.01)
    bank_eff = effective_number(_fit(BankPrior, rows))
    mix = _fit(MixturePrior, rows)
    mix_eff = effective_number(mix)
    assert bank_eff > true_eff + 1.0, "the confused argmax votes are mixed towards uniform"
    assert abs(mix_eff - true_eff) < 0.6
    assert abs(mix_eff - true_eff) < 0.4 * (bank_eff - true_eff)
    truth = torch.tensor(COUNTS, dtype=torch.float64) / n
    assert float((mix.double() - truth).abs().sum()) < 0.1  # total variation x 2
    assert float(mix[0]) == pytest.approx(float(truth[0]), abs=0.03)  # head share


def test_components_are_matched_back_to_their_anchors() -> None:
    # A permuted imbalance: the head is anchor 7, the tail anchor 3.
    head_to_tail = [7, 2, 6, 1, 4, 8, 0, 9, 5, 3]
    counts = [0] * K
    for c, n in zip(head_to_tail, COUNTS, strict=True):
        counts[c] = n
    rows, n = _rows(noise=0.3, counts=counts)
    weights, kappa, iters = fit_vmf_mixture_weights(rows)
    truth = torch.tensor(counts, dtype=torch.float64) / n
    assert torch.equal(weights.argsort(descending=True), torch.tensor(head_to_tail))
    torch.testing.assert_close(weights, truth, atol=0.01, rtol=0)
    assert kappa > 1.0 and 1 <= iters <= 200
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=weights.dtype))


def test_floor_unseen_rows_and_state_dict() -> None:
    est = MixturePrior(num_samples=20, num_anchors=4, warmup_momentum=0.0, floor=1.0)
    est.refresh()  # nothing seen: stays uniform
    torch.testing.assert_close(est.prior(), torch.full((4,), 0.25))
    rows = torch.tensor([[1.0, 0, 0, 0]] * 6 + [[0, 0, 1.0, 0]] * 2)
    est.update(torch.arange(8), rows * 5)
    est.refresh()
    # 6 and 2 of 8 seen rows (12 never seen are ignored), plus one floor count per anchor.
    torch.testing.assert_close(
        est.prior(), torch.tensor([7.0, 1.0, 3.0, 1.0]) / 12, atol=1e-4, rtol=0
    )
    other = MixturePrior(num_samples=20, num_anchors=4)
    other.load_state_dict(est.state_dict())
    assert torch.equal(other.prior(), est.prior()) and torch.equal(other.bank, est.bank)
    with pytest.raises(ValueError, match="em_iters"):
        MixturePrior(4, 3, em_iters=0)


def test_is_a_gh_prior_choice() -> None:
    cfg = load_config(None, ["gh.prior=mixture", "gh.num_anchors=10"])
    assert cfg.gh.prior == "mixture"
    est = build_prior(cfg.gh, num_samples=30)
    assert isinstance(est, MixturePrior) and est.num_anchors == 10
    assert isinstance(build_prior(GHConfig(prior="bank"), 5), BankPrior)
