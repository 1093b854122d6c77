"""The prior estimators ``gh.prior.name`` selects from: the registry (its keys are the option's
choices, :data:`geoharmony.gh.options.PRIORS`)."""

from __future__ import annotations

from geoharmony.gh.oracles import MatchedOraclePrior, OraclePrior
from geoharmony.gh.priors import BankPrior, PriorEstimator, StreamingPrior

__all__ = ["PRIORS"]

PRIORS: dict[str, type[PriorEstimator]] = {
    "bank": BankPrior,
    "streaming": StreamingPrior,
    "oracle": OraclePrior,
    "oracle_matched": MatchedOraclePrior,
}
