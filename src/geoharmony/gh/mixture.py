"""A prior estimator that tracks the imbalance better than vote counting: EM for the weights
of a von Mises-Fisher mixture on the paper's per-sample bank (beyond the paper)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from geoharmony.gh.priors import BankPrior

__all__ = ["MixturePrior", "fit_vmf_mixture_weights"]


class MixturePrior(BankPrior):
    """A prior that tracks the imbalance: EM for a von Mises-Fisher mixture on the bank's rows.

    The same per-sample EMA bank as :class:`BankPrior` (same update, momenta, floor and
    checkpoint buffers); only :meth:`refresh` differs. Why the paper's argmax histogram comes out
    nearly uniform, and what this estimator does about it:

    * The argmax of a noisy logit row is a *confused* label: when a class's rows scatter around
      its anchor, a share of them vote for other anchors, and the histogram is the true prior
      pushed through a confusion matrix, i.e. mixed towards uniform. The fix is the classical
      one for estimating class proportions from noisy posteriors (Saerens et al. 2002): fit the
      mixing weights by maximum likelihood, which *deconvolves* the confusion instead of counting
      hard votes. Unlike Sinkhorn under a uniform marginal, the weights are free, so a head class
      is not split over several anchors to even out the masses.
    * The likelihood is a mixture of K von Mises-Fisher components on the sphere of centred,
      normalised bank rows (the projected logits already sum to zero for a simplex ETF; they live
      on S^(K-2)), with one concentration kappa shared by all components (estimated by the
      Banerjee et al. 2005 approximation, not guessed: a wrong temperature biases the weights)
      and free weights pi. The component means start at the anchors' own logit directions and
      are free too: during the SSL warm-up the class clusters need not sit on anchors, and a
      component that follows a whole head cluster counts it once instead of splitting it between
      the two anchors it falls between.
    * EM starts from the hard argmax assignment (so the first M-step reproduces the paper's
      histogram) and only moves the weights where the likelihood says so. Components are mapped
      back to anchors one-to-one by the Hungarian algorithm on mean-anchor cosine
      (``scipy.optimize.linear_sum_assignment``), so ``pi_k`` is the mass of the cluster anchor
      ``k`` is closest to; with means started at the anchors this is usually the identity.

    Limits: like any mixture fit without a size penalty, with more anchors than classes
    (K = 100, C = 10) a class may be covered by several components, which raises the effective
    number; and if the features hold no cluster structure (early SSL) nothing can recover the
    class prior from them. ``prior_floor`` counts are added as in the paper's estimator.

    Args:
        em_iters: EM iterations per refresh (each is two ``[N, K] x [K, K]`` products).
        tol: stop when the weights move less than this (max absolute change).
        Other arguments as :class:`BankPrior`.
    """

    def __init__(
        self,
        num_samples: int,
        num_anchors: int,
        em_iters: int = 200,
        tol: float = 1e-7,
        **bank: Any,
    ) -> None:
        super().__init__(num_samples, num_anchors, **bank)
        if em_iters < 1:
            raise ValueError(f"em_iters must be >= 1, got {em_iters}")
        self.em_iters = em_iters
        self.tol = tol
        self.last_kappa = float("nan")  # diagnostics of the latest fit
        self.last_iters = 0

    @torch.no_grad()
    def refresh(self) -> None:
        rows = self.bank[self.seen]
        if rows.shape[0] < 2:
            return
        weights, kappa, iters = fit_vmf_mixture_weights(rows, self.em_iters, self.tol)
        self.last_kappa, self.last_iters = kappa, iters
        counts = weights * rows.shape[0] + self.floor
        if float(counts.sum()) > 0:
            self.current.copy_((counts / counts.sum()).to(self.current))


def _centred_unit(x: Tensor) -> Tensor:
    """Rows minus their mean over the last axis, scaled to unit norm (zero rows stay zero)."""
    x = x - x.mean(dim=-1, keepdim=True)
    return F.normalize(x, dim=-1)


@torch.no_grad()
def fit_vmf_mixture_weights(
    rows: Tensor, iters: int = 200, tol: float = 1e-7
) -> tuple[Tensor, float, int]:
    """Mixing weights of a K-component vMF mixture fitted by EM to ``[N, K]`` logit rows.

    Component ``k`` starts at anchor ``k``'s logit direction (the centred one-hot vector) and
    the EM starts from the hard argmax assignment. Returns ``([K]`` float64 weights summing to
    1, aligned to anchors by the Hungarian algorithm``, kappa, iterations run)``.
    """
    from scipy.optimize import linear_sum_assignment  # scikit-learn's dependency

    x = _centred_unit(rows.double())  # [N, K] on S^(K-2)
    n, k = x.shape
    dim = k - 1  # the centred rows span K - 1 dimensions
    anchors = _centred_unit(torch.eye(k, dtype=x.dtype, device=x.device))  # [K, K]
    resp = F.one_hot(x.argmax(dim=1), k).to(x.dtype)  # [N, K], the paper's hard votes
    weights = resp.mean(dim=0)
    means = anchors.clone()
    kappa = 1.0
    done = 0
    for done in range(1, iters + 1):
        # M-step: weights, means (kept at their previous value where a component is empty),
        # shared concentration from the mean resultant length (Banerjee et al. 2005, eq. 4.4).
        mass = resp.sum(dim=0)  # [K]
        new_weights = mass / n
        sums = resp.T @ x  # [K, K]
        norms = sums.norm(dim=1)
        alive = norms > 1e-12
        means = torch.where(alive[:, None], sums / norms.clamp_min(1e-12)[:, None], means)
        r_bar = float(norms.sum() / n)
        r_bar = min(max(r_bar, 1e-6), 1.0 - 1e-6)
        kappa = min(r_bar * (dim - r_bar**2) / (1.0 - r_bar**2), 1e4)
        moved = float((new_weights - weights).abs().max())
        weights = new_weights
        if done > 1 and moved < tol:
            break
        # E-step (the vMF normaliser is shared by all components and cancels).
        log_post = weights.clamp_min(1e-300).log()[None, :] + kappa * (x @ means.T)
        resp = torch.softmax(log_post, dim=1)
    # Map components to anchors one-to-one (maximum total cosine).
    comp, anchor = linear_sum_assignment((means @ anchors.T).cpu().numpy(), maximize=True)
    aligned = torch.zeros_like(weights)
    aligned[torch.as_tensor(anchor, device=x.device)] = weights[
        torch.as_tensor(comp, device=x.device)
    ]
    return aligned / aligned.sum(), kappa, done
