"""DnC, "Divide and Contrast" (Tian, Hénaff, van den Oord, ICCV 2021): a re-implementation from
the paper. No reference code was released; every choice the paper leaves open is listed in
docs/dnc.md.

One trainer run passes through three stages, chosen by the (whole) epoch:

1. **base** (``base_epochs_fraction`` of ``optim.epochs``): SimCLR's NT-Xent on the main backbone
   and projector, plus the GH term when ``gh.enabled``.
2. **experts** (``expert_epochs_fraction``): at the end of the base stage the pretraining set is
   clustered by k-means on the base's L2-normalised backbone features, and each of the
   ``num_experts`` experts (a backbone + projector copy) starts from the base's weights. Each
   batch's images are routed to the expert of their cluster, which contrasts them against the
   other images of *its cluster only* (the hard negatives that are DnC's point). The base is
   frozen. No GH term (see :meth:`DnC._expert_step`).
3. **distill** (the remaining epochs): the main backbone (the *student*; by default continuing
   from the base) is trained with NT-Xent (+GH) plus ``distill_weight`` times the regression of
   two frozen teachers' L2-normalised backbone features, the base's and the image's expert's,
   each through its own MLP head on the student's features.

Evaluation uses ``method.backbone``, which at the end of the run is the student. Every piece of
state (stage, cluster assignments, experts, teacher copy, heads) is a registered parameter or
buffer, created at construction so that the trainer's single optimizer sees it and checkpoints
hold it: a run paused in any stage resumes bit for bit.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, Self, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoharmony import parallel
from geoharmony.config import Config, choice, method_options
from geoharmony.eval.clusters import kmeans_assignments
from geoharmony.losses import nt_xent
from geoharmony.methods.base import DataInfo, StepOutput, TrainContext
from geoharmony.methods.registry import register_method
from geoharmony.methods.simclr import SimCLR

__all__ = [
    "BASE",
    "DISTILL",
    "EXPERTS",
    "STAGE_NAMES",
    "DnC",
    "DnCOptions",
    "StagePlan",
    "distill_regression_loss",
    "kmeans_assignments",
]

log = logging.getLogger(__name__)

BASE, EXPERTS, DISTILL = 0, 1, 2
STAGE_NAMES = ("base", "experts", "distill")


@dataclass
class DnCOptions:
    """``method.dnc`` (re-implementation from the paper; docs/dnc.md)."""

    num_experts: int = 2  # k-means clusters, one expert each
    base_epochs_fraction: float = 0.5  # of optim.epochs (rounded to whole epochs)
    expert_epochs_fraction: float = 0.25  # of optim.epochs; distillation gets the rest
    distill_weight: float = 1.0  # weight of the regression to the teachers' representations
    # base (continue from the base model) | scratch (re-initialise)
    student_init: str = choice("base", ("base", "scratch"))
    kmeans_n_init: int = 3  # k-means restarts (seeded by train.seed)

    def problems(self, section: str = "method.dnc") -> list[str]:
        """Values out of range, one message each naming the key."""
        out = [
            f"{section}.{name}={getattr(self, name)} must be at least 1"
            for name in ("num_experts", "kmeans_n_init")
            if getattr(self, name) < 1
        ]
        for name in ("base_epochs_fraction", "expert_epochs_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                out.append(f"{section}.{name}={getattr(self, name)} must lie in [0, 1]")
        return out


@dataclass(frozen=True)
class StagePlan:
    """Whole-epoch stage boundaries: ``[0, base_end)`` base, ``[base_end, expert_end)`` experts,
    ``[expert_end, total_epochs)`` distillation."""

    base_epochs: int
    expert_epochs: int
    total_epochs: int

    @property
    def base_end(self) -> int:
        return self.base_epochs

    @property
    def expert_end(self) -> int:
        return self.base_epochs + self.expert_epochs

    @property
    def distill_epochs(self) -> int:
        return self.total_epochs - self.expert_end

    def stage(self, epoch: int) -> int:
        """Stage (``BASE``, ``EXPERTS`` or ``DISTILL``) of 0-based ``epoch``."""
        if epoch < self.base_end:
            return BASE
        return EXPERTS if epoch < self.expert_end else DISTILL

    @classmethod
    def from_config(cls, cfg: Config) -> StagePlan:
        """Round the configured fractions to whole epochs (half up) and check them.

        Raises:
            ValueError: a stage would be empty (base or distillation) or the fractions overflow.
        """
        d: DnCOptions = method_options(cfg, "dnc")
        total = cfg.optim.epochs
        base = math.floor(d.base_epochs_fraction * total + 0.5)
        experts = math.floor(d.expert_epochs_fraction * total + 0.5)
        if base < 1 or total - base - experts < 1:
            raise ValueError(
                f"DnC needs at least one base and one distillation epoch: optim.epochs={total} "
                f"with method.dnc.base_epochs_fraction={d.base_epochs_fraction} and "
                f"expert_epochs_fraction={d.expert_epochs_fraction} gives {base} base, "
                f"{experts} expert and {total - base - experts} distillation epochs"
            )
        return cls(base, experts, total)


def distill_regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``[n]`` squared distance of L2-normalised rows: ``2 - 2 cos(prediction_i, target_i)``.

    Args:
        prediction: ``[n, d]`` head outputs (differentiable).
        target: ``[n, d]`` teacher representations (treated as constants).
    """
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(
            f"prediction and target must both be [n, d], got {list(prediction.shape)} and "
            f"{list(target.shape)}"
        )
    p = F.normalize(prediction.float(), dim=1)
    t = F.normalize(target.detach().float(), dim=1)
    return (p - t).pow(2).sum(dim=1)


class _Expert(nn.Module):
    """One cluster's model: a backbone + projector of the base's architecture."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def embed(self, views: Tensor) -> Tensor:
        """``[n, C, H, W] -> [n, d]``."""
        return cast(Tensor, self.projector(self.backbone(views)))


def _regression_head(in_dim: int, hidden: int, out_dim: int, seed: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear``, weights drawn from a seeded generator.

    No BatchNorm: an expert's head sees only the (few) rows of its cluster in a batch.
    """
    head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (head[0], head[2]):
            assert isinstance(layer, nn.Linear)
            # nn.Linear's default initialisation, from the seeded generator.
            nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=gen)
            bound = 1.0 / layer.in_features**0.5
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return head


@register_method("dnc")
class DnC(SimCLR):
    """DnC on SimCLR (+GH): base -> k-means experts -> distilled student (re-implementation from
    the paper; see the module docstring and docs/dnc.md).

    Submodules beyond :class:`Method`'s ``backbone``/``projector`` (the base, then the student):
    ``experts`` (``num_experts`` x backbone + projector), ``base_teacher`` (frozen copy of the
    base backbone) and ``distill_heads`` (``[0]`` regresses the base teacher, ``[1 + c]`` expert
    ``c``). Buffers: ``stage`` (scalar, the last stage entered) and ``assignments`` (``[N]``
    cluster of each pretraining image, ``-1`` before clustering).
    """

    # Whole stages leave parameters without gradients (experts in the base stage, the base in
    # the expert stage, experts absent from a batch).
    ddp_find_unused_parameters = True
    Options = DnCOptions
    display_name = "DnC"

    stage: Tensor
    assignments: Tensor

    @classmethod
    def data_problems(cls, cfg: Config, data: DataInfo) -> list[str]:
        problems = super().data_problems(cfg, data)
        experts = method_options(cfg, "dnc").num_experts
        try:
            StagePlan.from_config(cfg)
        except ValueError as err:
            problems.append(str(err))
        local_batch = cfg.optim.batch_size // parallel.world_size()
        if local_batch <= experts:
            # With more images than experts, some cluster has two images in every batch.
            problems.append(
                f"DnC needs more images per step and process ({local_batch}) than "
                f"method.dnc.num_experts ({experts}): raise optim.batch_size or lower it"
            )
        if data.num_samples < experts:
            problems.append(
                f"method.dnc.num_experts={experts} is more than the {data.num_samples} "
                f"pretraining images (k-means forms one cluster per expert); set "
                f"method.dnc.num_experts to at most {data.num_samples}"
            )
        return problems

    def __init__(self, cfg: Config, data: DataInfo, distributed: bool = False) -> None:
        super().__init__(cfg, data, distributed)
        d: DnCOptions = self.options
        if distributed and cfg.train.sync_batchnorm:
            raise ValueError(
                "DnC does not support train.sync_batchnorm: the experts run on batches whose "
                "size differs by process, and some processes skip an expert"
            )
        self.plan = StagePlan.from_config(cfg)
        # "scratch": the student restarts from the very weights the base started from (they
        # are rebuilt identically, from the same seeds, whenever the run is constructed).
        self._initial_student: dict[str, dict[str, Tensor]] | None = None
        if d.student_init == "scratch":
            self._initial_student = {
                "backbone": {k: v.clone() for k, v in self.backbone.state_dict().items()},
                "projector": {k: v.clone() for k, v in self.projector.state_dict().items()},
            }
        self.experts = nn.ModuleList(
            _Expert(copy.deepcopy(self.backbone), copy.deepcopy(self.projector))
            for _ in range(d.num_experts)
        )
        self.base_teacher = copy.deepcopy(self.backbone)
        dim = self.backbone.out_dim
        self.distill_heads = nn.ModuleList(
            _regression_head(dim, cfg.model.projector_hidden, dim, seed=cfg.train.seed + 2 + i)
            for i in range(d.num_experts + 1)
        )
        self.register_buffer("stage", torch.tensor(BASE, dtype=torch.long))
        self.register_buffer("assignments", torch.full((data.num_samples,), -1, dtype=torch.long))
        self._stage = BASE  # host copy of ``stage`` (no device sync per step)
        self._context: TrainContext | None = None
        self.register_load_state_dict_post_hook(_refresh_stage)

    # ----- accessors ------------------------------------------------------------------------
    def expert(self, cluster: int) -> _Expert:
        return cast(_Expert, self.experts[cluster])

    def head(self, teacher: int) -> nn.Module:
        """Regression head of ``teacher`` (0: base, ``1 + c``: expert ``c``)."""
        return cast(nn.Module, self.distill_heads[teacher])

    @property
    def current_stage(self) -> int:
        return self._stage

    # ----- the step -------------------------------------------------------------------------
    def forward(self, view1: Tensor, view2: Tensor, indices: Tensor, epoch: float) -> StepOutput:
        """One step of the stage that ``epoch`` (fractional) falls in; shapes as
        :meth:`Method.forward`."""
        stage = self.plan.stage(int(epoch))
        if stage != self._stage:
            raise RuntimeError(
                f"DnC: epoch {epoch:.3f} belongs to the {STAGE_NAMES[stage]} stage but the model "
                f"is in the {STAGE_NAMES[self._stage]} stage (on_epoch_end was not called at the "
                "stage boundary, or the state does not belong to this run)"
            )
        if stage == BASE:
            out = super().forward(view1, view2, indices, epoch)
        elif stage == EXPERTS:
            out = self._expert_step(view1, view2, indices)
        else:
            out = self._distill_step(view1, view2, indices, epoch)
        out.logs["dnc_stage"] = view1.new_tensor(float(stage))
        return out

    def _expert_step(self, view1: Tensor, view2: Tensor, indices: Tensor) -> StepOutput:
        """Each expert: NT-Xent over the batch's images of its cluster (negatives from that
        cluster only). The loss is the sum of the experts' means, so each expert's gradient is
        that of its own mean loss, as if it were trained alone on its sub-batch.

        No GH term: a cluster's sub-batch is small and its class marginal is nothing like the
        prior estimated over the whole data set, which the allocation would force onto it. The
        base model is not run, so it gets no gradient. Under DDP the negatives are this
        process's images of the cluster (sub-batch sizes differ by process).
        """
        assign = self.assignments[indices]  # [B]
        loss = view1.new_zeros((), dtype=torch.float32)
        weighted = view1.new_zeros((), dtype=torch.float32)
        trained = 0
        for c in range(len(self.experts)):
            members = torch.nonzero(assign == c).squeeze(1)
            if members.numel() < 2:  # one image has no negative: its loss is exactly 0
                continue
            z1, z2 = self.per_view(self.expert(c).embed, view1[members], view2[members])
            per_sample = nt_xent(z1, z2, self.cfg.method.temperature, reduction="none")
            loss = loss + per_sample.mean()
            weighted = weighted + per_sample.detach().sum()
            trained += 1
        if trained == 0:
            raise RuntimeError("DnC: no cluster has two images in this batch")
        logs = {
            "expert_loss": weighted / view1.shape[0],
            "experts_trained": view1.new_tensor(float(trained)),
        }
        return StepOutput(loss, logs)

    def _distill_step(
        self, view1: Tensor, view2: Tensor, indices: Tensor, epoch: float
    ) -> StepOutput:
        """Student: NT-Xent (+GH) + ``distill_weight`` x the mean over views of
        ``reg(head_0(h), base(x)) + reg(head_{1+c}(h), expert_c(x))`` with ``c`` the image's
        cluster, ``h`` the student's backbone features and ``reg`` :func:`distill_regression_loss`.
        Teachers run frozen, in eval mode, without autograd."""
        batch = view1.shape[0]
        views = torch.cat([view1, view2])
        h1, h2 = self.per_view(self.backbone, view1, view2)
        z1, z2 = self.per_view(self.projector, h1, h2)
        h = torch.cat([h1, h2])  # [2B, D]
        per_sample = self.ssl_loss(z1, z2)
        self.observe_sample_losses(indices, per_sample.detach())
        ssl = per_sample.mean()
        with torch.no_grad():
            base_target = self.base_teacher(views)
        base_term = distill_regression_loss(self.head(0)(h), base_target).sum()
        expert_term = h.new_zeros((), dtype=torch.float32)
        assign = self.assignments[indices].repeat(2)  # [2B]: view-1 rows, then view-2 rows
        for c in range(len(self.experts)):
            rows = torch.nonzero(assign == c).squeeze(1)
            if rows.numel() == 0:
                continue
            with torch.no_grad():
                target = self.expert(c).backbone(views[rows])
            expert_term = (
                expert_term + distill_regression_loss(self.head(1 + c)(h[rows]), target).sum()
            )
        distill = (base_term + expert_term) / (2 * batch)
        loss = ssl + self.options.distill_weight * distill
        logs = {
            "ssl_loss": ssl.detach(),
            "distill_loss": distill.detach(),
            "distill_base": base_term.detach() / (2 * batch),
            "distill_expert": expert_term.detach() / (2 * batch),
        }
        return self.with_gh(StepOutput(loss, logs), z1, z2, indices, epoch)

    # ----- stage switches -------------------------------------------------------------------
    def bind(self, context: TrainContext) -> None:
        """Keep the context: the clustering at the end of the base stage needs its features."""
        self._context = context

    def train(self, mode: bool = True) -> Self:
        """As :meth:`nn.Module.train`, but frozen teachers stay in eval mode while distilling."""
        super().train(mode)
        if self._stage == DISTILL:
            self.base_teacher.eval()
            self.experts.eval()
        return self

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        done = epoch + 1
        if done == self.plan.base_end and self._stage == BASE:
            self._divide()
        if done == self.plan.expert_end and self._stage == EXPERTS:
            self._start_distillation()

    @torch.no_grad()
    def _divide(self) -> None:
        """Cluster the pretraining set on the base's features; start every expert and the base
        teacher from the base's weights (parameters and BatchNorm statistics)."""
        if self._context is None:
            raise RuntimeError(
                "DnC needs the trainer's TrainContext (Method.bind) to cluster the pretraining "
                "set at the end of its base stage"
            )
        d: DnCOptions = self.options
        if parallel.rank() == 0:
            # In eval mode: running statistics, no batch dependence, no buffer updates.
            features = F.normalize(self._context.pretrain_features(self.backbone), dim=1)
            if features.shape[0] != self.assignments.shape[0]:
                raise RuntimeError(
                    f"DnC: the context gave {features.shape[0]} feature rows for "
                    f"{self.assignments.shape[0]} pretraining images"
                )
            labels = kmeans_assignments(
                features, d.num_experts, self.cfg.train.seed, d.kmeans_n_init
            )
            self.assignments.copy_(labels.to(self.assignments.device))
        if parallel.is_distributed():
            torch.distributed.broadcast(self.assignments, src=0)
        sizes = torch.bincount(self.assignments.cpu(), minlength=d.num_experts).tolist()
        log.info("DnC: k-means on the base features, cluster sizes %s", sizes)
        base, projector = self.backbone.state_dict(), self.projector.state_dict()
        for c in range(d.num_experts):
            self.expert(c).backbone.load_state_dict(base)
            self.expert(c).projector.load_state_dict(projector)
        self.base_teacher.load_state_dict(base)
        self._set_stage(EXPERTS)

    @torch.no_grad()
    def _start_distillation(self) -> None:
        """Freeze the teachers; re-initialise the student if ``student_init == "scratch"``."""
        if self.options.student_init == "scratch":
            assert self._initial_student is not None
            self.backbone.load_state_dict(self._initial_student["backbone"])
            self.projector.load_state_dict(self._initial_student["projector"])
        self._set_stage(DISTILL)
        self.base_teacher.eval()
        self.experts.eval()

    def _set_stage(self, stage: int) -> None:
        self.stage.fill_(stage)
        self._stage = stage
        log.info("DnC: entering the %s stage", STAGE_NAMES[stage])


def _refresh_stage(module: nn.Module, incompatible_keys: Any) -> None:
    """After ``load_state_dict``: the host copy of the stage follows the loaded buffer."""
    assert isinstance(module, DnC)
    module._stage = int(module.stage)
    if module._stage == DISTILL:
        module.base_teacher.eval()
        module.experts.eval()
