"""GH's own options: the ``gh`` section of the run configuration (docs/design.md section 3).

Three sections, each passed whole to the part of GH that reads it: ``gh`` itself (the loss and
its schedule), ``gh.allocation`` (how surrogate labels are found: the solver and its
settings, handed to :class:`~geoharmony.gh.allocation.Allocator`) and ``gh.prior`` (the anchor
marginal's estimator, handed to the ``gh.prior.name`` class of
:data:`~geoharmony.gh.estimators.PRIORS`). The defaults are the paper's.

Every value's rule is written once, on its section (:meth:`GHConfig.problems`), and checked
when a configuration is loaded; choices are declared on the fields (:func:`choice`). This module
imports nothing else of GH, so every GH module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALLOCATIONS",
    "LOGITS",
    "MIN_ANCHORS",
    "PARTIAL_RAMPS",
    "PARTIAL_TARGETS",
    "PRIORS",
    "TARGETS",
    "TARGET_WEIGHTINGS",
    "AllocationOptions",
    "GHConfig",
    "PriorOptions",
    "choice",
]

# A structure needs two anchors to be a structure (the simplex ETF's cosine is -1/(K-1)).
MIN_ANCHORS = 2
LOGITS = ("projected", "cosine")  # projected (official): normalize(z M^T) | cosine: cos(z, m_k)
# sinkhorn (paper) | labels: a diagnostic upper bound, not self-supervised: each image's
# surrogate label is its true class (anchor k = class k), so it needs num_anchors >= classes.
TARGETS = ("sinkhorn", "labels")
# none (paper): every sample counts once | inverse_prior: a sample counts as much as its
# targets' anchors are rare under the prior (beyond the paper; class-balanced under the true
# shares and classes)
TARGET_WEIGHTINGS = ("none", "inverse_prior")
# balanced (paper: the exact anchor marginal) | relaxed (the marginal KL-relaxed) | partial
# (P2OT: mass rho on the anchors, the rest on a dummy anchor)
ALLOCATIONS = ("balanced", "relaxed", "partial")
PARTIAL_RAMPS = ("sigmoid", "linear")
# weighted: rows keep each sample's mass on the real anchors (P2OT) | renormalised: rows sum to 1
PARTIAL_TARGETS = ("weighted", "renormalised")
# bank (paper) | streaming (O(K) memory) | oracle, oracle_matched: diagnostics reading labels
PRIORS = ("bank", "streaming", "oracle", "oracle_matched")


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A string field that must be one of ``choices`` (checked when a config is loaded)."""
    return field(default=default, metadata={"choices": choices})


def _positive(section: str, obj: Any, names: tuple[str, ...]) -> list[str]:
    return [
        f"{section}.{n}={getattr(obj, n)} must be positive"
        for n in names
        if not getattr(obj, n) > 0
    ]


def _at_least(section: str, obj: Any, lows: dict[str, int]) -> list[str]:
    return [
        f"{section}.{n}={getattr(obj, n)} must be at least {low}"
        for n, low in lows.items()
        if getattr(obj, n) < low
    ]


def _momentum(section: str, obj: Any, names: tuple[str, ...]) -> list[str]:
    return [
        f"{section}.{n}={getattr(obj, n)} must be in [0, 1)"
        for n in names
        if not 0 <= getattr(obj, n) < 1
    ]


@dataclass
class AllocationOptions:
    """How surrogate labels are found (``gh.allocation``): entropic optimal transport between
    the batch's samples and the anchors, kernel ``exp(t / epsilon)``."""

    name: str = choice("balanced", ALLOCATIONS)
    epsilon: float = 0.05
    iterations: int = 300
    tolerance: float | None = None  # early stop on the anchor marginals; None: all iterations
    tau: float = 0.5  # relaxed, partial: strength of the KL penalty on the anchor marginal
    # partial: rho ramps from partial_start to partial_end over the GH phase
    partial_start: float = 0.1
    partial_end: float = 1.0
    partial_ramp: str = choice("sigmoid", PARTIAL_RAMPS)
    partial_targets: str = choice("weighted", PARTIAL_TARGETS)
    dummy_temperature: float = 0.1  # partial: the dummy anchor's score temperature

    def problems(self, section: str = "gh.allocation") -> list[str]:
        """Values out of range, one message each naming the key."""
        out = _positive(section, self, ("epsilon", "tau", "dummy_temperature"))
        out += _at_least(section, self, {"iterations": 1})
        for name in ("partial_start", "partial_end"):
            if not 0 < getattr(self, name) <= 1:
                out.append(f"{section}.{name}={getattr(self, name)} must be in (0, 1]")
        if self.tolerance is not None and not self.tolerance > 0:
            out.append(f"{section}.tolerance={self.tolerance} must be positive (or null: off)")
        return out


@dataclass
class PriorOptions:
    """The anchor marginal the allocation balances towards (``gh.prior``)."""

    name: str = choice("bank", PRIORS)
    # bank and the oracles: an EMA bank of each image's view-1 logits, with this momentum
    # during GH's warm-up and after it; pi = argmax histogram + floor counts per anchor,
    # refreshed at the end of the warm-up and every refresh_every epochs
    warmup_momentum: float = 0.9
    momentum: float = 0.999
    floor: float = 0.0
    refresh_every: int = 20
    streaming_momentum: float = 0.99  # streaming: EMA of batch-mean soft assignments, per step

    def problems(self, section: str = "gh.prior") -> list[str]:
        """Values out of range, one message each naming the key."""
        out = _momentum(section, self, ("warmup_momentum", "momentum", "streaming_momentum"))
        out += _at_least(section, self, {"refresh_every": 1})
        if self.floor < 0:
            out.append(f"{section}.floor={self.floor} must not be negative")
        return out


@dataclass
class GHConfig:
    """Geometric Harmonization; ``enabled: false`` is the plain baseline.

    The defaults are the paper's. Beyond it: ``allocation.name`` ``relaxed`` / ``partial``,
    ``prior.name=streaming`` and ``target_weighting=inverse_prior`` (docs/protocol.md);
    ``targets=labels`` and the ``oracle`` priors are diagnostics that read the labels.
    """

    enabled: bool = False
    num_anchors: int = 100
    structure_seed: int = 0
    logits: str = choice("projected", LOGITS)
    temperature: float = 0.1  # prediction temperature gamma
    weight: float = 1.0
    warmup_epochs: int = 500  # SSL only; the prior is estimated meanwhile
    ramp_epochs: int = 10  # linear rise of the weight after the warm-up, per epoch
    targets: str = choice("sinkhorn", TARGETS)
    target_weighting: str = choice("none", TARGET_WEIGHTINGS)
    allocation: AllocationOptions = field(default_factory=AllocationOptions)
    prior: PriorOptions = field(default_factory=PriorOptions)

    def problems(self) -> list[str]:
        """Every value of the section out of its range, one message each naming the ``gh.``
        key; checked when a configuration is loaded, so a run never starts with one."""
        out = _positive("gh", self, ("temperature",))
        out += _at_least(
            "gh", self, {"num_anchors": MIN_ANCHORS, "warmup_epochs": 0, "ramp_epochs": 0}
        )
        if self.weight < 0:
            out.append(f"gh.weight={self.weight} must not be negative")
        return out + self.allocation.problems() + self.prior.problems()
