"""GH's own options: the ``gh`` section of the run configuration (docs/design.md section 3).

Choices are declared on the fields (``metadata["choices"]``), drawn from the registries they
select from, and checked once, when a configuration is loaded (:mod:`geoharmony.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geoharmony.gh.priors import PRIORS

__all__ = ["LOGITS", "TARGETS", "GHConfig", "choice"]

LOGITS = ("projected", "cosine")
# sinkhorn (paper) | labels: a diagnostic upper bound, not self-supervised: each image's
# surrogate label is its true class (anchor k = class k), so it needs num_anchors >= classes.
TARGETS = ("sinkhorn", "labels")


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A string field that must be one of ``choices`` (checked when a config is loaded)."""
    return field(default=default, metadata={"choices": choices})


@dataclass
class GHConfig:
    """Geometric Harmonization; ``enabled: false`` is the plain baseline."""

    enabled: bool = False
    num_anchors: int = 100
    structure_seed: int = 0
    logits: str = choice("projected", LOGITS)  # projected (official) | cosine
    epsilon: float = 0.05
    temperature: float = 0.1
    sinkhorn_iters: int = 300
    sinkhorn_tol: float | None = None
    weight: float = 1.0
    warmup_epochs: int = 500  # SSL only; the prior is estimated meanwhile
    ramp_epochs: int = 10  # linear rise of the weight after the warm-up
    # bank (paper) | streaming | uniform | mixture (EM on the bank) | oracle (diagnostic)
    prior: str = choice("bank", tuple(PRIORS))
    bank_warmup_momentum: float = 0.9
    bank_momentum: float = 0.999
    prior_floor: float = 0.0
    prior_refresh_every: int = 20  # epochs between bank refreshes after the warm-up
    streaming_momentum: float = 0.99
    targets: str = choice("sinkhorn", TARGETS)
