"""GH's own options: the ``gh`` section of the run configuration (docs/design.md section 3).

Choices are declared on the fields (``metadata["choices"]``), drawn from the registries they
select from, and checked once, when a configuration is loaded (:mod:`geoharmony.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geoharmony.gh.allocation import ALLOCATIONS
from geoharmony.gh.estimators import PRIORS
from geoharmony.gh.loss import TARGET_WEIGHTINGS

__all__ = [
    "AFFINITY_SOURCES",
    "LOGITS",
    "PARTIAL_RAMPS",
    "PARTIAL_TARGETS",
    "TARGETS",
    "GHConfig",
    "choice",
    "option_problems",
]

LOGITS = ("projected", "cosine")
# sinkhorn (paper) | labels: a diagnostic upper bound, not self-supervised: each image's
# surrogate label is its true class (anchor k = class k), so it needs num_anchors >= classes.
TARGETS = ("sinkhorn", "labels")
PARTIAL_RAMPS = ("sigmoid", "linear")
AFFINITY_SOURCES = ("batch", "memory")
# weighted: rows keep each sample's mass on the real anchors (P2OT) | renormalised: rows sum to 1
PARTIAL_TARGETS = ("weighted", "renormalised")


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A string field that must be one of ``choices`` (checked when a config is loaded)."""
    return field(default=default, metadata={"choices": choices})


@dataclass
class GHConfig:
    """Geometric Harmonization; ``enabled: false`` is the plain baseline.

    The defaults are the paper's. ``allocation`` other than ``balanced``, ``queue_batches > 0``
    and the priors ``plan``, ``streaming``, ``mixture`` are beyond the paper (docs/protocol.md);
    ``targets=labels`` and the ``oracle`` priors are diagnostics that read the labels.
    """

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
    # bank (paper) | streaming | uniform | mixture (EM on the bank) | plan (EMA of the
    # allocation's anchor masses) | powerlaw (a fixed long-tailed marginal, PMSN) | oracle
    # (rank-matched true shares) | oracle_matched (true shares on the anchors each class is
    # allocated to); the oracles are diagnostics
    prior: str = choice("bank", tuple(PRIORS))
    bank_warmup_momentum: float = 0.9
    bank_momentum: float = 0.999
    prior_floor: float = 0.0
    prior_refresh_every: int = 20  # epochs between bank refreshes after the warm-up
    streaming_momentum: float = 0.99
    plan_momentum: float = 0.99  # prior=plan: EMA momentum per step
    powerlaw_exponent: float = 0.25  # prior=powerlaw: pi_k ~ (k + 1) ** -exponent (PMSN)
    targets: str = choice("sinkhorn", TARGETS)
    # How surrogate labels are found: balanced (paper: exact anchor marginal) | relaxed (the
    # marginal KL-relaxed, strength marginal_tau) | partial (P2OT: mass rho on the anchors, the
    # rest on a dummy anchor; rho ramps from partial_start to partial_end over the GH phase)
    allocation: str = choice("balanced", tuple(ALLOCATIONS))
    marginal_tau: float = 0.5
    partial_start: float = 0.1
    partial_end: float = 1.0
    partial_ramp: str = choice("sigmoid", PARTIAL_RAMPS)
    partial_targets: str = choice("weighted", PARTIAL_TARGETS)
    partial_dummy_temperature: float = 0.1
    # Allocate over the batch plus this many earlier global batches' detached logits
    queue_batches: int = 0
    # kNN affinity (after SP2OT): the allocation runs on logits + affinity * the mean targets of
    # each sample's affinity_neighbours nearest samples; 0: off. affinity_source: batch (a
    # second pass over the allocation's own rows) | memory (every sample's latest targets)
    affinity: float = 0.0
    affinity_neighbours: int = 10
    affinity_source: str = choice("batch", AFFINITY_SOURCES)
    # none (paper) | inverse_prior: each sample's GH term weighted by 1 / prior of the anchors
    # it is allocated to, scaled to mean 1 over the global batch (rare anchors count more)
    target_weighting: str = choice("none", TARGET_WEIGHTINGS)


def option_problems(cfg: GHConfig) -> list[str]:
    """Values of ``cfg`` outside their range, one message each naming the ``gh.`` key: checked
    before training starts, since the allocation would refuse them only at the first GH step,
    after the whole warm-up."""
    positive = ("epsilon", "temperature", "marginal_tau", "partial_dummy_temperature")
    at_least = {
        "sinkhorn_iters": 1,
        "affinity_neighbours": 1,
        "num_anchors": 1,
        "queue_batches": 0,
        "warmup_epochs": 0,
        "ramp_epochs": 0,
        "prior_refresh_every": 1,
    }
    problems = [
        f"gh.{name}={getattr(cfg, name)} must be positive"
        for name in positive
        if not getattr(cfg, name) > 0
    ]
    problems += [
        f"gh.{name}={getattr(cfg, name)} must be at least {low}"
        for name, low in at_least.items()
        if getattr(cfg, name) < low
    ]
    problems += [
        f"gh.{name}={getattr(cfg, name)} must not be negative"
        for name in ("weight", "affinity", "prior_floor", "powerlaw_exponent")
        if getattr(cfg, name) < 0
    ]
    for name in ("partial_start", "partial_end"):
        if not 0 < getattr(cfg, name) <= 1:
            problems.append(f"gh.{name}={getattr(cfg, name)} must be in (0, 1]")
    for name in ("bank_warmup_momentum", "bank_momentum", "streaming_momentum", "plan_momentum"):
        if not 0 <= getattr(cfg, name) < 1:
            problems.append(f"gh.{name}={getattr(cfg, name)} must be in [0, 1)")
    if cfg.sinkhorn_tol is not None and not cfg.sinkhorn_tol > 0:
        problems.append(f"gh.sinkhorn_tol={cfg.sinkhorn_tol} must be positive (or null: off)")
    return problems
