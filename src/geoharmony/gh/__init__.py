"""Geometric Harmonization, all in one place (docs/design.md section 3).

* :mod:`~geoharmony.gh.anchors`: the fixed geometric uniform structure (simplex ETF, or spread
  anchors when K > d + 1);
* :mod:`~geoharmony.gh.sinkhorn`: surrogate labels by entropic optimal transport;
* :mod:`~geoharmony.gh.priors`: estimators of the anchor marginal (with the label-reading
  diagnostics of :mod:`.oracles`, and the registry :mod:`.estimators`);
* :mod:`~geoharmony.gh.allocation`: allocations beyond the paper (relaxed, partial);
* :mod:`~geoharmony.gh.loss`: :class:`GHLoss`, a plain ``nn.Module`` for any training loop;
* :mod:`~geoharmony.gh.term`: :class:`GHTerm`, what a geoharmony method composes (schedule,
  prior refresh, priming, logs);
* :mod:`~geoharmony.gh.options`: the ``gh`` section of the run configuration.

Nothing here imports the rest of geoharmony's training code (only :mod:`geoharmony.parallel`),
so ``GHLoss`` drops into any training loop.
"""

from geoharmony.gh.anchors import (
    StructureReport,
    max_pairwise_cosine,
    simplex_etf,
    structure_report,
    uniform_structure,
)
from geoharmony.gh.estimators import PRIORS
from geoharmony.gh.loss import GHLoss, GHOutput, gh_diagnostics, swapped_cross_entropy
from geoharmony.gh.options import AllocationOptions, GHConfig, PriorOptions
from geoharmony.gh.oracles import MatchedOraclePrior, OraclePrior
from geoharmony.gh.priors import (
    BankPrior,
    PriorEstimator,
    StreamingPrior,
    effective_number,
    prior_agreement,
)
from geoharmony.gh.sinkhorn import sinkhorn
from geoharmony.gh.term import GHTerm, build_prior, gh_data_problems, pairing_epoch

__all__ = [
    "PRIORS",
    "AllocationOptions",
    "BankPrior",
    "GHConfig",
    "GHLoss",
    "GHOutput",
    "GHTerm",
    "MatchedOraclePrior",
    "OraclePrior",
    "PriorEstimator",
    "PriorOptions",
    "StreamingPrior",
    "StructureReport",
    "build_prior",
    "effective_number",
    "gh_data_problems",
    "gh_diagnostics",
    "max_pairwise_cosine",
    "pairing_epoch",
    "prior_agreement",
    "simplex_etf",
    "sinkhorn",
    "structure_report",
    "swapped_cross_entropy",
    "uniform_structure",
]
