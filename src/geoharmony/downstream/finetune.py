"""Supervised long-tailed classification from a pretrained backbone (logit adjustment or CE).

Trains on the *labelled long-tailed* pretraining set of the checkpoint's run (its
``pretrain_indices``, with their labels) and tests on the balanced test split, reporting
Many/Medium/Few/Std/Avg in the ``metrics.json`` schema.

* ``linear``: frozen backbone (eval mode); features are extracted once, without augmentation,
  and a linear head is trained on them with Adam (lr decayed exponentially to 1e-6, as the
  ``adam`` probe preset).
* ``full``: backbone and head trained together with SGD (momentum 0.9, cosine decay to 0) on
  mildly augmented images: RandomResizedCrop(scale 0.35-1) and horizontal flip, batched on the
  device for in-memory sources (:class:`~geoharmony.data.augment.BatchedSimCLRAugment` with
  colour jitter and grayscale off) and per image in loader workers for file sources.

Both train with :class:`~geoharmony.downstream.logit_adjust.LogitAdjustedLoss` (``loss="la"``,
prior = the training class frequencies) or plain cross-entropy, and predict with the raw logits.
Every random draw is seeded; a run is not resumable (it is short: rerun it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from geoharmony.config import ConfigError, to_dict
from geoharmony.data.build import RunData
from geoharmony.data.splits import ImageSplit, Preparation
from geoharmony.data.stream import BatchPlan, derived_seed, labelled_batches
from geoharmony.downstream.backbone import PretrainedBackbone
from geoharmony.downstream.logit_adjust import LogitAdjustedLoss, class_prior_from_counts
from geoharmony.engine.numerics import (
    NonFiniteLossError,
    cpu_bf16_gradient_hint,
    non_finite_gradients,
)
from geoharmony.engine.runtime import autocast_dtype
from geoharmony.eval import extract_features, get_probe_settings, result_from_predictions
from geoharmony.eval.probes import nest_probe

__all__ = ["FinetuneSettings", "finetune", "split_features"]

log = logging.getLogger(__name__)

Mode = Literal["linear", "full"]
LossName = Literal["la", "ce"]

# Defaults by mode: optimiser, epochs, lr, batch, weight decay.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"epochs": 200, "lr": 1e-2, "batch_size": 256, "weight_decay": 5e-6},
    "full": {"epochs": 30, "lr": 0.05, "batch_size": 128, "weight_decay": 5e-4},
}
# Mild train-time augmentation for full fine-tuning.
CROP_SCALE = (0.35, 1.0)


@dataclass
class FinetuneSettings:
    """What ``geoharmony finetune`` does; None picks the mode's default (see ``_DEFAULTS``).

    Attributes:
        mode: ``linear`` (frozen backbone) or ``full``.
        loss: ``la`` (logit-adjusted cross-entropy) or ``ce``.
        tau: logit-adjustment strength (ignored by ``ce``).
        epochs, lr, batch_size, weight_decay: optimisation.
        seed: None uses the stored config's ``train.seed``.
        progress: show a tqdm bar over epochs.
    """

    mode: Mode = "linear"
    loss: LossName = "la"
    tau: float = 1.0
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    seed: int | None = None
    progress: bool = True

    def resolved(self, default_seed: int) -> FinetuneSettings:
        """A copy with every None replaced by its default."""
        if self.mode not in _DEFAULTS:
            raise ConfigError(f"mode must be linear or full, got {self.mode!r}")
        if self.loss not in ("la", "ce"):
            raise ConfigError(f"loss must be la or ce, got {self.loss!r}")
        values = {
            k: getattr(self, k) if getattr(self, k) is not None else v
            for k, v in _DEFAULTS[self.mode].items()
        }
        out = dataclasses.replace(
            self, **values, seed=default_seed if self.seed is None else self.seed
        )
        assert out.epochs is not None and out.batch_size is not None and out.lr is not None
        if out.epochs < 1 or out.batch_size < 1 or out.lr <= 0:
            raise ConfigError(
                f"epochs and batch size must be >= 1 and lr > 0, got {out.epochs}, "
                f"{out.batch_size}, {out.lr}"
            )
        return out


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def split_features(
    pb: PretrainedBackbone,
    split: ImageSplit,
    indices: np.ndarray,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Frozen features ``[n, D]`` and labels ``[n]`` of ``split[indices]``, no augmentation,
    prepared as the backbone's pretraining images were (size, normalisation)."""
    cfg = pb.cfg
    pb.backbone.to(device)
    prep = Preparation(pb.size, (pb.mean, pb.std), cfg.data.num_workers)
    batches = split.eval_batches(indices, prep, cfg.eval.batch_size, device)
    feats = extract_features(
        pb.backbone,
        batches,
        device=device,
        preprocess=None,
        autocast_dtype=autocast_dtype(cfg.train.precision, device),
    )
    return feats, torch.from_numpy(split.labels_of(indices))


def _seeded_linear(dim: int, num_classes: int, seed: int) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init drawn from a seeded generator."""
    head = nn.Linear(dim, num_classes)
    gen = torch.Generator().manual_seed(derived_seed(seed, 0x4EAD))
    with torch.no_grad():
        nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(head.bias, -bound, bound, generator=gen)
    return head


def _criterion(s: FinetuneSettings, counts: list[int]) -> nn.Module:
    if s.loss == "ce":
        return nn.CrossEntropyLoss()
    return LogitAdjustedLoss(class_prior_from_counts(counts), tau=s.tau)


def _progress(s: FinetuneSettings, desc: str) -> tqdm:
    assert s.epochs is not None
    return tqdm(total=s.epochs, desc=desc, disable=not s.progress, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# Linear: a head on cached features
# --------------------------------------------------------------------------------------------


def _backward_checked(
    loss: Tensor,
    model: nn.Module,
    epoch: int,
    autocast: torch.dtype | None,
    device: torch.device,
) -> None:
    """``loss.backward()``, refusing a non-finite loss and non-finite gradients of a finite one
    (either would write NaN into the weights), with the likely fix."""
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLossError(
            f"fine-tuning loss is {float(loss.detach())} at epoch {epoch + 1}; try a lower --lr"
        )
    loss.backward()
    culprits = non_finite_gradients(model)
    if culprits:
        raise NonFiniteLossError(
            f"non-finite gradients at fine-tuning epoch {epoch + 1} (finite loss) in "
            f"{len(culprits)} parameters, first {', '.join(culprits[:3])}."
            + cpu_bf16_gradient_hint(autocast, device)
        )


def _train_linear(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    criterion: nn.Module,
    s: FinetuneSettings,
    device: torch.device,
) -> tuple[nn.Linear, list[dict[str, float]]]:
    assert s.epochs is not None and s.batch_size is not None and s.lr is not None
    assert s.seed is not None
    # The `adam` probe preset's schedule: exponential decay from lr to 1e-6 over the epochs.
    schedule = get_probe_settings("adam", epochs=s.epochs)
    schedule = dataclasses.replace(schedule, lr=s.lr, final_lr=min(1e-6, s.lr))
    head = _seeded_linear(train_x.shape[1], num_classes, s.seed).to(device)
    criterion.to(device)
    opt = torch.optim.Adam(head.parameters(), lr=s.lr, weight_decay=s.weight_decay or 0.0)
    x, y = train_x.to(device), train_y.to(device)
    gen = torch.Generator().manual_seed(derived_seed(s.seed, 0x11EA))
    history = []
    bar = _progress(s, "finetune (linear)")
    for epoch in range(s.epochs):
        lr = schedule.lr_at(epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        perm = torch.randperm(len(y), generator=gen).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(y), s.batch_size):
            idx = perm[start : start + s.batch_size]
            loss = criterion(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            _backward_checked(loss, head, epoch, None, device)
            opt.step()
            total += loss.detach() * len(idx)
        history.append({"epoch": epoch + 1, "loss": float(total) / len(y), "lr": lr})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        bar.update(1)
    bar.close()
    head.eval()
    return head, history


# --------------------------------------------------------------------------------------------
# Full fine-tuning
# --------------------------------------------------------------------------------------------


class _Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def _train_full(
    pb: PretrainedBackbone,
    data: RunData,
    criterion: nn.Module,
    s: FinetuneSettings,
    device: torch.device,
) -> tuple[nn.Linear, list[dict[str, float]]]:
    assert s.epochs is not None and s.lr is not None and s.seed is not None
    indices = data.pretrain_indices
    assert s.batch_size is not None
    prep = Preparation(pb.size, (pb.mean, pb.std), pb.cfg.data.num_workers)
    batches = labelled_batches(
        data.train, indices, prep, BatchPlan(s.batch_size, s.seed, device), CROP_SCALE
    )
    head = _seeded_linear(pb.feature_dim, data.num_classes, s.seed)
    model = _Classifier(pb.backbone, head).to(device)
    criterion.to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=0.9, weight_decay=s.weight_decay or 0.0
    )
    autocast = autocast_dtype(pb.cfg.train.precision, device)
    n = len(indices)
    assert s.batch_size is not None
    steps = max(1, math.ceil(n / s.batch_size)) * s.epochs
    step = 0
    history = []
    bar = _progress(s, "finetune (full)")
    for epoch in range(s.epochs):
        model.train()
        started = time.perf_counter()
        total, seen = torch.zeros((), device=device), 0
        for images, labels in batches(epoch):
            lr = 0.5 * s.lr * (1.0 + math.cos(math.pi * min(step / steps, 1.0)))
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, autocast, enabled=autocast is not None):
                logits = model(images)
            loss = criterion(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            _backward_checked(loss, model, epoch, autocast, device)
            opt.step()
            step += 1
            total += loss.detach() * len(labels)
            seen += len(labels)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(total) / max(seen, 1),
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        bar.update(1)
    bar.close()
    model.eval()
    head.eval()
    return head, history


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def finetune(
    pb: PretrainedBackbone,
    data: RunData,
    settings: FinetuneSettings,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fine-tune ``pb`` on ``data``'s labelled long-tailed set and test on its test split.

    Returns:
        ``(result, model_state)``: the ``metrics.json`` dict and ``{"head": ..., "backbone":
        ... (full mode only), "settings": ..., "class_prior": ...}`` for ``torch.save``.
    """
    s = settings.resolved(pb.cfg.train.seed)
    assert s.seed is not None
    cfg = pb.cfg
    torch.manual_seed(s.seed)  # for third-party draws; ours use explicit generators
    counts = list(data.class_counts)
    if len(counts) != data.num_classes or data.num_classes < 2:
        raise ConfigError(f"fine-tuning needs >= 2 classes with counts, got {counts}")
    criterion = _criterion(s, counts)
    started = time.perf_counter()
    if s.mode == "linear":
        train_x, train_y = split_features(pb, data.train, data.pretrain_indices, device)
        head, history = _train_linear(train_x, train_y, data.num_classes, criterion, s, device)
    else:
        head, history = _train_full(pb, data, criterion, s, device)
    train_seconds = time.perf_counter() - started
    test_idx = np.arange(len(data.test), dtype=np.int64)
    test_x, test_y = split_features(pb, data.test, test_idx, device)
    with torch.no_grad():
        logits = head(test_x.to(device)).float().cpu()
    pred = logits.argmax(1)
    flat = result_from_predictions(pred, test_y, counts, cfg.eval.group_rule)  # type: ignore[arg-type]
    result = nest_probe("finetune", flat)
    result.update(
        task="finetune",
        mode=s.mode,
        loss=s.loss,
        tau=s.tau if s.loss == "la" else 0.0,
        method=cfg.method.name,
        gh=cfg.gh.enabled,
        dataset=data.name,
        imbalance_ratio=cfg.data.imbalance_ratio,
        seed=s.seed,
        accuracy=float((pred == test_y).double().mean() * 100),
        finetune={
            "optimizer": "adam" if s.mode == "linear" else "sgd",
            "epochs": s.epochs,
            "lr": s.lr,
            "batch_size": s.batch_size,
            "weight_decay": s.weight_decay,
            "augment": None if s.mode == "linear" else f"random resized crop {CROP_SCALE}, flip",
            "train_images": len(data.pretrain_indices),
            "test_images": len(test_y),
            "resumable": False,
        },
        pretrained=pb.summary(),
        data=data.record(),
        config=to_dict(cfg),
        train_seconds=train_seconds,
        history=history,
    )
    model_state = {
        "head": {k: v.cpu() for k, v in head.state_dict().items()},
        "backbone": (
            None
            if s.mode == "linear"
            else {k: v.cpu() for k, v in pb.backbone.state_dict().items()}
        ),
        "settings": dataclasses.asdict(s),
        "class_prior": class_prior_from_counts(counts),
        "pretrained": pb.summary(),
    }
    return result, model_state
