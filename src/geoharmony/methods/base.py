"""The method interface and registry.

A method owns a backbone, a projector and the losses it combines; it says how one step turns two
augmented views into a loss. The trainer only calls the hooks below, so it knows nothing about
any particular method. Geometric Harmonization is not a method: it is a :class:`GHTerm` that any
method adds to its loss when ``gh.enabled`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from geoharmony.config import Config
from geoharmony.data.augment import ImageHook, ViewHook
from geoharmony.methods.gh_term import GHTerm
from geoharmony.models import Projector, build_backbone

if TYPE_CHECKING:
    from geoharmony.data.build import RunData

__all__ = [
    "METHODS",
    "DataInfo",
    "Method",
    "StepOutput",
    "TrainContext",
    "build_method",
    "register_method",
]


@dataclass
class StepOutput:
    """What one training step returns.

    Attributes:
        loss: scalar to back-propagate.
        logs: detached scalar tensors to log (converted to floats only on logging steps, so a
            step does not synchronise with the device).
    """

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class TrainContext:
    """What the trainer lends a method that needs the data between epochs (e.g. DnC's k-means).

    ``pretrain_features(fn)`` runs ``fn`` (``[b, C, H, W]`` normalised images -> ``[b, D]``) in
    no-grad mode over every pretraining image, without augmentation, and returns ``[N, D]`` in
    dataset-index order.
    """

    pretrain_features: Callable[[Callable[[Tensor], Tensor]], Tensor]


@dataclass(frozen=True)
class DataInfo:
    """What a method may know about its training data."""

    num_samples: int
    in_channels: int
    num_classes: int = 0  # 0 when unknown (unlabelled data)
    # Labels of the pretraining data, read only by the diagnostics gh.prior=oracle (per-class
    # counts) and gh.targets=labels (each image's class, in dataset-index order).
    class_counts: tuple[int, ...] = ()
    labels: tuple[int, ...] = ()

    @classmethod
    def of(cls, data: RunData) -> DataInfo:
        """What a method may know about a built run's pretraining data."""
        labels = np.asarray(data.train.labels)[data.pretrain_indices]
        return cls(
            len(data.pretrain_indices),
            data.in_channels,
            data.num_classes,
            tuple(data.class_counts),
            tuple(labels.tolist()),
        )


class Method(nn.Module):
    """Backbone + projector + the method's SSL loss (+ an optional GH term).

    Subclasses implement :meth:`ssl_loss`; methods whose step is more than "embed both views and
    add the losses" override :meth:`forward`. ``forward`` is the training step, so that
    ``DistributedDataParallel`` sees the call and synchronises gradients.
    """

    name: ClassVar[str]
    # DDP must look for parameters without gradients (e.g. experts absent from a batch).
    ddp_find_unused_parameters: ClassVar[bool] = False

    def __init__(self, cfg: Config, data: DataInfo, distributed: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.distributed = distributed
        kwargs: dict[str, Any] = {"in_channels": data.in_channels, "seed": cfg.train.seed}
        if cfg.model.backbone == "cifar_resnet18" or cfg.model.width != 1.0:
            kwargs["width"] = cfg.model.width
        self.backbone = build_backbone(cfg.model.backbone, **kwargs)
        self.projector = Projector(
            self.backbone.out_dim,
            cfg.model.projector_hidden,
            cfg.model.projector_dim,
            cfg.model.projector_layers,
            seed=cfg.train.seed + 1,
        )
        self.gh: GHTerm | None = None
        if cfg.gh.enabled:
            self.gh = GHTerm(
                cfg.gh,
                cfg.model.projector_dim,
                data.num_samples,
                distributed,
                data.class_counts,
                data.labels,
            )

    # ----- what subclasses define (and may override: embed_views) --------------------------
    def ssl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``[B]`` per-image SSL loss of two ``[B, d]`` projections."""
        raise NotImplementedError

    # ----- the step -----------------------------------------------------------------------
    def embed(self, views: Tensor) -> Tensor:
        """``[N, C, H, W]`` images -> ``[N, d]`` projections."""
        return self.projector(self.backbone(views))

    def embed_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, C, H, W]`` views -> two ``[B, d]`` projections."""
        # Both views in one backbone pass: one BatchNorm batch of 2B, as the official code does.
        z1, z2 = self.embed(torch.cat([view1, view2])).chunk(2)
        return z1, z2

    def forward(self, view1: Tensor, view2: Tensor, indices: Tensor, epoch: float) -> StepOutput:
        """One step on ``[B, C, H, W]`` views of the images with dataset ``indices`` ``[B]``.

        ``epoch`` is fractional (epoch + step / steps_per_epoch), for the GH weight ramp.
        """
        z1, z2 = self.embed_views(view1, view2)
        per_sample = self.ssl_loss(z1, z2)
        self.observe_sample_losses(indices, per_sample.detach())
        loss = per_sample.mean()
        logs = {"ssl_loss": loss.detach()}
        if self.gh is not None:
            gh_loss, gh_logs = self.gh(z1, z2, indices, epoch)
            loss = loss + gh_loss
            logs.update(gh_logs)
        return StepOutput(loss, logs)

    # ----- hooks (no-ops unless a method needs them) ---------------------------------------
    def observe_sample_losses(self, indices: Tensor, losses: Tensor) -> None:
        """Receives each step's ``[B]`` detached per-image SSL losses (BCL tracks them)."""

    def view_hook(self) -> ViewHook | None:
        """A per-sample transform the data stream applies to each uint8 view after the SimCLR
        recipe (BCL's memorisation-driven RandAugment), or None."""
        return None

    def image_hook(self) -> ImageHook | None:
        """The same for file-backed sources, applied per image in data-loader workers; it must
        be picklable and read any per-epoch state from shared memory."""
        return None

    def bind(self, context: TrainContext) -> None:
        """Called once by the trainer before training; keep ``context`` if needed."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before the first step of ``epoch`` (0-based)."""
        if self.gh is not None:
            self.gh.on_epoch_start(epoch)

    def on_epoch_end(self, epoch: int) -> None:
        """Called after the last step of ``epoch``, before any checkpoint of it is written."""
        if self.gh is not None:
            self.gh.on_epoch_end(epoch)

    def features(self, images: Tensor) -> Tensor:
        """Frozen-evaluation features (backbone output, before the projector)."""
        return self.backbone(images)


METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a method to :data:`METHODS` under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def build_method(cfg: Config, data: DataInfo, distributed: bool = False) -> Method:
    """Instantiate the method named by ``cfg.method.name``."""
    try:
        cls = METHODS[cfg.method.name]
    except KeyError:
        valid = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown method {cfg.method.name!r}; registered: {valid}") from None
    return cls(cfg, data, distributed)
