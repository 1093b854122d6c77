"""BCL (Zhou et al., "Contrastive Learning with Boosted Memorization", ICML 2022) on SimCLR.

Following the official code (MediaBrain-SJTU/BCL ``train.py``, ``data/memoboosted_cifar100.py``,
``data/randaug.py``, and its GH port ``BCL/memoboosted_cifar100.py`` + ``train_cifar.py``):

* **momentum loss**: each sample's per-image SSL loss (NT-Xent, before GH) is tracked as an EMA
  ``L <- beta L + (1 - beta) loss`` (beta = ``method.bcl.beta``, 0.97 in the GH code); the first
  observation of a sample initialises it (official: the first epoch's raw loss);
* **memorisation score**: after every epoch, ``w = 1/2 + 1/2 (L - mean L) / max |L - mean L|``
  in ``[0, 1]`` (the official z-score divided by its largest magnitude, mapped to ``[0, 1]``; the
  std cancels). A high loss (poorly memorised, typically a tail sample) gives a high score.
  Samples never observed yet (the stream drops the last partial batch) get the neutral 0.5; if
  every observed loss is equal, every score is 0.5;
* **memorisation-boosted augmentation**: an extra RandAugment (the official 15-op list, see
  :mod:`geoharmony.data.randaugment`) of ``method.bcl.num_ops`` rounds with strength
  ``s = min(max_strength, base_strength + strength_range * w)`` on the 0..30 scale

  - variant ``I`` (official GH CIFAR recipe, ``rand_k = 1``): each round applies with
    probability ``w``, strength ``10 + 20 w``;
  - variant ``D``: the score drives the strength only; every round applies (probability 1).
    (The stored BCL/GH code has no I/D switch; ``D`` is this library's strength-only ablation.)
  - ``random_strength``: ``s = base + range * w * U(0, 1)`` per sample, the official
    ImageNet-LT/Places-LT recipe (with ``base 0, range 30, num_ops 2``) and the BCL repo's.

  Before the first epoch ends there are no scores and no extra augmentation (the generator is not
  touched, so epoch 1 sees exactly SimCLR's views).

Where the extra augmentation happens: as in the official code, last in each view's pipeline
(after crop/flip/jitter/grayscale, on 8-bit pixels), with independent draws for the two views:
the data stream calls :meth:`BCL.augment_views` through the method's ``view_hook``.

Data parallel: the losses are gathered so every rank holds the same EMA and scores; the random
draws cover the global batch and each rank applies its rows, as the two-view augmentation does.
File-backed sources (``list``, ``folder``) augment per image in data-loader workers: the scores
reach them through a shared-memory tensor refreshed at every epoch boundary
(:class:`ScoredRandAugment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from geoharmony import parallel
from geoharmony.config import Config, choice
from geoharmony.data.augment import ImageHook, ViewHook
from geoharmony.data.randaugment import MAX_MAGNITUDE, draw_rand_augment, rand_augment
from geoharmony.methods.base import DataInfo
from geoharmony.methods.registry import register_method
from geoharmony.methods.simclr import SimCLR

__all__ = [
    "BCL",
    "BCLOptions",
    "ScoredRandAugment",
    "memorization_scores",
    "strength_and_probability",
]


@dataclass
class BCLOptions:
    """``method.bcl``."""

    # I (probability and strength follow the score) | D (strength only)
    variant: str = choice("I", ("I", "D"))
    beta: float = 0.97  # EMA momentum of the per-sample loss
    base_strength: float = 10.0
    strength_range: float = 20.0
    max_strength: float = 30.0
    num_ops: int = 1  # RandAugment rounds per sample (official: 1 on CIFAR, 2 on ImageNet/Places)
    # strength = base + range * w * U(0, 1) instead of base + range * w (official ImageNet/Places)
    random_strength: bool = False

    def problems(self, section: str = "method.bcl") -> list[str]:
        """Values out of range, one message each naming the key."""
        out = []
        if not 0.0 <= self.beta < 1.0:
            out.append(f"{section}.beta={self.beta} must be in [0, 1)")
        if self.num_ops < 1:
            out.append(f"{section}.num_ops={self.num_ops} must be at least 1")
        if not 0.0 <= self.max_strength <= MAX_MAGNITUDE:
            out.append(
                f"{section}.max_strength={self.max_strength} must be in [0, {MAX_MAGNITUDE:g}]"
            )
        for name in ("base_strength", "strength_range"):
            if getattr(self, name) < 0:
                out.append(f"{section}.{name}={getattr(self, name)} must not be negative")
        return out


@torch.no_grad()
def memorization_scores(loss_ema: Tensor, observed: Tensor) -> Tensor:
    """Official BCL normalisation of ``[N]`` momentum losses into ``[0, 1]`` scores.

    ``w = 1/2 + 1/2 (L - mean) / max |L - mean|`` over the observed samples; unobserved samples
    (and every sample when all observed losses are equal) get 0.5.
    """
    scores = torch.full_like(loss_ema, 0.5, dtype=torch.float32)
    if not bool(observed.any()):
        return scores
    seen = loss_ema[observed].double()
    centred = seen - seen.mean()
    spread = centred.abs().max()
    if float(spread) > 0:
        scores[observed] = (0.5 + 0.5 * centred / spread).float()
    return scores


def strength_and_probability(cfg: BCLOptions, w: Tensor, jitter: Tensor) -> tuple[Tensor, Tensor]:
    """RandAugment magnitude (0..30) and per-round probability for ``[B]`` scores ``w``."""
    scale = w * jitter if cfg.random_strength else w
    strength = (cfg.base_strength + cfg.strength_range * scale).clamp(max=cfg.max_strength)
    probability = w if cfg.variant == "I" else torch.ones_like(w)
    return strength, probability


class ScoredRandAugment:
    """BCL's augmentation of one uint8 ``[C, H, W]`` view in a data-loader worker.

    ``shared_scores`` is the method's shared-memory ``worker_scores`` (N scores, then a flag), so
    workers, persistent ones included, read the scores of the current epoch.
    """

    def __init__(self, shared_scores: Tensor, cfg: BCLOptions) -> None:
        self.shared_scores, self.cfg = shared_scores, cfg

    @torch.no_grad()
    def __call__(self, view: Tensor, index: int, generator: torch.Generator) -> Tensor:
        if float(self.shared_scores[-1]) == 0.0:
            return view
        draws = draw_rand_augment(1, self.cfg.num_ops, generator)
        jitter = torch.rand(1, generator=generator)
        w = self.shared_scores[index : index + 1].float()
        strength, probability = strength_and_probability(self.cfg, w, jitter)
        return rand_augment(view[None], strength, probability, draws)[0]


@register_method("bcl")
class BCL(SimCLR):
    """SimCLR whose samples get an extra RandAugment that grows with their memorisation score.

    Buffers (checkpointed): ``loss_ema`` float ``[N]``, ``observed`` bool ``[N]``, ``scores``
    float ``[N]`` (the scores in use), ``scored`` bool scalar (whether any epoch has ended).
    """

    Options = BCLOptions
    display_name = "BCL"
    loss_ema: Tensor
    observed: Tensor
    scores: Tensor
    scored: Tensor

    def __init__(self, cfg: Config, data: DataInfo, distributed: bool = False) -> None:
        super().__init__(cfg, data, distributed)
        n = data.num_samples
        self.register_buffer("loss_ema", torch.zeros(n))
        self.register_buffer("observed", torch.zeros(n, dtype=torch.bool))
        self.register_buffer("scores", torch.zeros(n))
        self.register_buffer("scored", torch.zeros((), dtype=torch.bool))
        # What data-loader workers read (shared memory, so persistent workers see each epoch's
        # scores): element i < N is sample i's score, element N is 1 once scores exist.
        self.worker_scores = torch.zeros(n + 1).share_memory_()

    # ----- the momentum loss and the scores -------------------------------------------------
    @torch.no_grad()
    def observe_sample_losses(self, indices: Tensor, losses: Tensor) -> None:
        """EMA of each sample's ``[B]`` SSL loss (first observation initialises it)."""
        if self.distributed:
            indices = parallel.all_gather_no_grad(indices)
            losses = parallel.all_gather_no_grad(losses.detach())
        idx = indices.to(self.loss_ema.device)
        new = losses.detach().to(self.loss_ema)
        beta = self.options.beta
        old = self.loss_ema[idx]
        self.loss_ema[idx] = torch.where(self.observed[idx], beta * old + (1.0 - beta) * new, new)
        self.observed[idx] = True

    @torch.no_grad()
    def update_scores(self) -> None:
        """Normalise the momentum losses into the scores used from now on."""
        self.scores.copy_(memorization_scores(self.loss_ema, self.observed))
        self.scored.fill_(bool(self.observed.any()))

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        self.update_scores()
        self.publish_scores()

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.publish_scores()  # also after a resume, which restores the buffers only

    @torch.no_grad()
    def publish_scores(self) -> None:
        """Copy the scores in use to the shared tensor data-loader workers read."""
        self.worker_scores[:-1].copy_(self.scores.detach().cpu())
        self.worker_scores[-1] = float(bool(self.scored))

    # ----- the augmentation -----------------------------------------------------------------
    def strength_and_probability(self, w: Tensor, jitter: Tensor) -> tuple[Tensor, Tensor]:
        """RandAugment magnitude (0..30) and per-round probability for ``[B]`` scores ``w``
        (``jitter``: ``[B]`` uniforms, used when ``random_strength`` is set)."""
        return strength_and_probability(self.options, w, jitter)

    def view_hook(self) -> ViewHook:
        return self.augment_views

    def image_hook(self) -> ImageHook:
        return ScoredRandAugment(self.worker_scores, self.options)

    @torch.no_grad()
    def augment_views(
        self,
        views: Tensor,
        indices: Tensor,
        generator: torch.Generator,
        rows: Tensor | None = None,
        total: int | None = None,
    ) -> Tensor:
        """Score-driven RandAugment of uint8 ``[R, C, H, W]`` views of dataset ``indices``.

        ``views`` are rows ``rows`` of ``total`` views (default: all of them); the draws cover all
        ``total`` rows with fixed shapes, so the stream of draws never depends on the scores and
        a data-parallel rank reproduces its rows of a single process's batch.
        """
        if not bool(self.scored):
            return views
        if rows is None or total is None:
            rows, total = torch.arange(views.shape[0], device=generator.device), views.shape[0]
        draws = draw_rand_augment(total, self.options.num_ops, generator)
        jitter = torch.rand(total, generator=generator, device=generator.device)
        w = self.scores[indices.to(self.scores.device)].to(views.device)
        strength, probability = self.strength_and_probability(w, jitter[rows].to(views.device))
        return rand_augment(views, strength, probability, draws.select(rows))
