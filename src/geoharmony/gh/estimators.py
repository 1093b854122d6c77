"""The prior estimators ``gh.prior`` selects from: the registry (the option's choices are its
keys)."""

from __future__ import annotations

from geoharmony.gh.mixture import MixturePrior
from geoharmony.gh.oracles import MatchedOraclePrior, OraclePrior
from geoharmony.gh.priors import (
    BankPrior,
    PlanPrior,
    PowerLawPrior,
    PriorEstimator,
    StreamingPrior,
    UniformPrior,
)

__all__ = ["PRIORS"]

PRIORS: dict[str, type[PriorEstimator]] = {
    "bank": BankPrior,
    "streaming": StreamingPrior,
    "uniform": UniformPrior,
    "mixture": MixturePrior,
    "plan": PlanPrior,
    "powerlaw": PowerLawPrior,
    "oracle": OraclePrior,
    "oracle_matched": MatchedOraclePrior,
}
