"""The method interface.

A method owns a backbone, a projector and the losses it combines; it says how one step turns two
augmented views into a loss. The trainer only calls the hooks below, so it knows nothing about
any particular method, GH included. Geometric Harmonization is not a method: it is a
:class:`~geoharmony.gh.GHTerm` that any method composes into its loss when ``gh.enabled`` is
set, and whose bookkeeping (priming, logs, records, kept checkpoints) the hooks pass on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from geoharmony.config import Config, method_options
from geoharmony.data.augment import ImageHook, ViewHook
from geoharmony.data.stream import TrainBatch
from geoharmony.gh import GHTerm, gh_data_problems, pairing_epoch
from geoharmony.models import Projector, build_backbone

if TYPE_CHECKING:
    from geoharmony.data.build import RunData

__all__ = ["DataInfo", "Method", "StepOutput", "TrainContext"]


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
    """What the trainer lends a method that needs the data outside its steps.

    Attributes:
        pretrain_features: ``pretrain_features(module)`` runs ``module`` (``[b, C, H, W]``
            normalised images -> ``[b, D]``) in eval mode without gradients over every
            pretraining image, without augmentation; ``[N, D]`` float32 in dataset-index order
            (DnC's k-means).
        replay_batches: the training batches ``(view1, view2, indices)`` of the last completed
            epoch (the first epoch before any), laid out for the model; run the model on them
            inside ``autocast()`` (priming state that another run's checkpoint lacked).
        autocast: the training precision's autocast context.
    """

    pretrain_features: Callable[[nn.Module], Tensor]
    replay_batches: Callable[[], Iterator[TrainBatch]]
    autocast: Callable[[], AbstractContextManager[Any]]


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
        labels = data.train.labels_of(data.pretrain_indices).tolist() if data.labelled else []
        return cls(
            len(data.pretrain_indices),
            data.in_channels,
            data.num_classes,
            tuple(data.class_counts),
            tuple(labels),
        )


class Method(nn.Module):
    """Backbone + projector + the method's SSL loss (+ an optional GH term).

    Subclasses implement :meth:`ssl_loss`; methods whose step is more than "embed both views and
    add the losses" override :meth:`embed_views` or :meth:`forward`. ``forward`` is the training
    step, so that ``DistributedDataParallel`` sees the call and synchronises gradients. A
    subclass declares its own options as a dataclass ``Options``: the config section
    ``method.<name>``, read back with :attr:`options`.
    """

    # The options dataclass of this method's config section (None: no options of its own).
    Options: ClassVar[type | None] = None
    # How tables print the method (e.g. "SimCLR"); empty: its name.
    display_name: ClassVar[str] = ""
    # Set on the class itself by ``@register_method`` (a subclass does not inherit the name).
    registered_name: ClassVar[str] = ""
    # DDP must look for parameters without gradients (e.g. experts absent from a batch).
    ddp_find_unused_parameters: ClassVar[bool] = False

    def __init__(self, cfg: Config, data: DataInfo, distributed: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.name = self.name_of()
        # A config read by geoharmony.configure is checked already; this guards direct builds.
        if self.Options is not None and hasattr(self.Options, "problems"):
            problems = self.options.problems(f"method.{self.name}")
            if problems:
                raise ValueError("; ".join(problems))
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
                total_epochs=cfg.optim.epochs,
            )

    @classmethod
    def name_of(cls) -> str:
        """The name in results and of the options section: the registered name of this very
        class, else the class name (a user's method, or a subclass of a built-in one)."""
        return cls.__dict__.get("registered_name") or cls.__name__

    @property
    def options(self) -> Any:
        """This method's own options (the section ``method.<name>``, an ``Options``)."""
        return method_options(self.cfg, self.name)

    # ----- what subclasses define (and may override: embed_views) --------------------------
    def ssl_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``[B]`` per-image SSL loss of two ``[B, d]`` projections."""
        raise NotImplementedError

    # ----- the step -----------------------------------------------------------------------
    def embed(self, views: Tensor) -> Tensor:
        """``[N, C, H, W]`` images -> ``[N, d]`` projections."""
        return self.projector(self.backbone(views))

    def per_view(
        self, fn: Callable[[Tensor], Tensor], view1: Tensor, view2: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``fn`` applied to two ``[B, ...]`` views -> its two ``[B, ...]`` outputs.

        One call per view, as the official code does (``z1 = encoder(x1); z2 = encoder(x2)``):
        in training mode each view is its own BatchNorm batch of B, so view 1's outputs do not
        depend on view 2. ``model.joint_view_batch`` makes it one call on both (one BatchNorm
        batch of 2B), the recipe of the quality records made before 2026-12-07.
        """
        if self.cfg.model.joint_view_batch:
            out1, out2 = fn(torch.cat([view1, view2])).chunk(2)
            return out1, out2
        return fn(view1), fn(view2)

    def embed_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, C, H, W]`` views -> two ``[B, d]`` projections (:meth:`per_view`)."""
        return self.per_view(self.embed, view1, view2)

    def forward(self, view1: Tensor, view2: Tensor, indices: Tensor, epoch: float) -> StepOutput:
        """One step on ``[B, C, H, W]`` views of the images with dataset ``indices`` ``[B]``.

        ``epoch`` is fractional (epoch + step / steps_per_epoch), for the GH weight ramp.
        """
        z1, z2 = self.embed_views(view1, view2)
        per_sample = self.ssl_loss(z1, z2)
        self.observe_sample_losses(indices, per_sample.detach())
        loss = per_sample.mean()
        return self.with_gh(StepOutput(loss, {"ssl_loss": loss.detach()}), z1, z2, indices, epoch)

    def with_gh(
        self, out: StepOutput, z1: Tensor, z2: Tensor, indices: Tensor, epoch: float
    ) -> StepOutput:
        """``out`` plus the GH term of the ``[B, d]`` projections ``z1``, ``z2`` when GH is on."""
        if self.gh is None:
            return out
        gh_loss, gh_logs = self.gh(z1, z2, indices, epoch)
        return StepOutput(out.loss + gh_loss, {**out.logs, **gh_logs})

    # ----- hooks (no-ops unless a method needs them) ---------------------------------------
    @classmethod
    def data_problems(cls, cfg: Config, data: DataInfo) -> list[str]:
        """Why this method cannot train on ``data`` with ``cfg``: one message per problem,
        naming the setting, the numbers and the fix (empty when it can). Asked before the
        method is built, so that a run stops at once instead of after hours."""
        if not cfg.gh.enabled:
            return []
        return gh_data_problems(cfg.gh, data.num_samples, data.class_counts)

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

    def epoch_logs(self) -> dict[str, float]:
        """Values added to each epoch's log record (GH: the prior's shape)."""
        return {} if self.gh is None else self.gh.epoch_logs()

    def milestone_epochs(self) -> set[int]:
        """Epochs whose checkpoint must be written and kept through pruning: the end of the GH
        warm-up, where a paired +GH run starts from its baseline (with GH on or off, so every
        baseline can be paired)."""
        return {pairing_epoch(self.cfg.gh)}

    def adopt(self, model_state: dict[str, Tensor]) -> bool:
        """Take another run's model state (``--init-from``), keeping what this method adds to
        it (the GH term a baseline did not have). Returns whether :meth:`prime` must fill the
        added parts before the first step.

        Raises:
            RuntimeError: the state does not fit this model beyond those parts.
        """
        missing, unexpected = self.load_state_dict(model_state, strict=False)
        fresh = [k for k in missing if k.startswith("gh.")]
        foreign = [k for k in missing if not k.startswith("gh.")]
        if foreign or unexpected:
            raise RuntimeError(
                f"checkpoint does not fit this model: missing {foreign[:5]}, unexpected "
                f"{unexpected[:5]}"
            )
        return bool(fresh)

    @torch.no_grad()
    def prime(self, context: TrainContext) -> None:
        """Fill the parts :meth:`adopt` started fresh from the current model: GH's prior, from
        the model's view-1 projections over one epoch. Every other buffer (BatchNorm
        statistics) is restored, so the pass leaves no trace but the prior."""
        if self.gh is None:
            return
        saved = {k: v.clone() for k, v in self.named_buffers() if not k.startswith("gh.")}
        self.train()
        self.gh.prime(self.embed, context.replay_batches(), context.autocast)
        buffers = dict(self.named_buffers())
        for key, value in saved.items():
            buffers[key].copy_(value)

    def describe(self) -> dict[str, Any]:
        """How result files name the run's method."""
        return {"method": self.name, "gh": self.gh is not None}

    def evaluation_records(self, class_counts: list[int]) -> dict[str, Any]:
        """Entries a method adds to ``metrics.json`` (GH: the estimated prior against the true
        class shares ``class_counts``)."""
        return {} if self.gh is None else self.gh.evaluation_records(class_counts)

    def features(self, images: Tensor) -> Tensor:
        """Frozen-evaluation features (backbone output, before the projector)."""
        return self.backbone(images)
