"""Linear probe on cached (frozen) features.

Presets (docs/design.md section 6):

* ``adam`` — the official GH/BCL evaluation (``eval_sgd_per_class`` in their ``utils.py``):
  Adam, lr 1e-2 decayed exponentially per epoch so that it reaches 1e-6 after ``epochs``
  (default 500; ``lr_e = 1e-2 * (1e-6 / 1e-2) ** (e / epochs)``), weight decay 5e-6,
  batch 1000, reshuffled every epoch.
* ``sgd`` — the SDCLR evaluation (``train_cifar.py`` with ``--lr 30 --epochs 30
  --decreasing_lr 10,20 --wd 0``): SGD momentum 0.9, lr 30, *step* decay x0.1 at 1/3 and 2/3 of
  the epochs, no weight decay, batch 128 (SDCLR's default; it is not overridden in its scripts).

Feature normalisation: both official protocols feed the raw pooled features to the classifier,
so the default is ``feature_norm="none"``. ``"l2"`` (unit-norm rows) and ``"standardize"``
(per-dimension z-score with training statistics) are options; the returned probe carries the
normalisation, so ``probe(x)`` / :func:`predict` apply it to test features too.

Every random draw (weight init, per-epoch shuffles) comes from a ``torch.Generator`` seeded with
``seed``, so a CPU run is bit-for-bit repeatable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PRESETS",
    "FeatureNorm",
    "LinearProbe",
    "ProbeSettings",
    "get_probe_settings",
    "predict",
    "train_linear_probe",
]

FeatureNorm = Literal["none", "l2", "standardize"]
Schedule = Literal["exponential", "step", "cosine", "constant"]


@dataclass(frozen=True)
class ProbeSettings:
    """Hyper-parameters of a linear probe.

    Attributes:
        optimizer: ``"adam"`` or ``"sgd"``.
        epochs: passes over the training features.
        batch_size: mini-batch size (the last batch of an epoch may be smaller).
        lr: initial learning rate.
        final_lr: learning rate reached at the end (``exponential`` and ``cosine``).
        schedule: ``exponential`` (geometric per-epoch decay lr -> final_lr), ``step``
            (x ``step_gamma`` at each milestone), ``cosine`` (per epoch, lr -> final_lr) or
            ``constant``. The learning rate changes at epoch boundaries only, as in both
            official protocols.
        milestones: ``step`` milestones as fractions of ``epochs`` (rounded to whole epochs).
        step_gamma: ``step`` decay factor.
        weight_decay: L2 penalty (coupled, as in ``torch.optim.Adam`` / ``SGD``).
        momentum: SGD momentum (ignored by Adam).
        feature_norm: ``none`` | ``l2`` | ``standardize`` (see the module docstring).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    epochs: int = 500
    batch_size: int = 1000
    lr: float = 1e-2
    final_lr: float = 1e-6
    schedule: Schedule = "exponential"
    milestones: tuple[float, ...] = ()
    step_gamma: float = 0.1
    weight_decay: float = 5e-6
    momentum: float = 0.9
    feature_norm: FeatureNorm = "none"

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during ``epoch`` (0-based)."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "exponential":
            return self.lr * (self.final_lr / self.lr) ** (epoch / self.epochs)
        if self.schedule == "cosine":
            cos = 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
            return self.final_lr + (self.lr - self.final_lr) * cos
        passed = sum(epoch >= round(m * self.epochs) for m in self.milestones)
        return self.lr * self.step_gamma**passed


PRESETS: dict[str, ProbeSettings] = {
    "adam": ProbeSettings(),
    "sgd": ProbeSettings(
        optimizer="sgd",
        epochs=30,
        batch_size=128,
        lr=30.0,
        schedule="step",
        milestones=(1 / 3, 2 / 3),
        weight_decay=0.0,
        momentum=0.9,
    ),
}


def get_probe_settings(
    preset: str | ProbeSettings = "adam",
    *,
    epochs: int | None = None,
    feature_norm: FeatureNorm | None = None,
) -> ProbeSettings:
    """Resolve a preset name (or settings) and apply the given overrides."""
    if isinstance(preset, ProbeSettings):
        settings = preset
    else:
        try:
            settings = PRESETS[preset]
        except KeyError:
            valid = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown probe preset {preset!r}; valid presets: {valid}") from None
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=epochs)
    if feature_norm is not None:
        settings = dataclasses.replace(settings, feature_norm=feature_norm)
    _validate(settings)
    return settings


def _validate(s: ProbeSettings) -> None:
    if s.optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {s.optimizer!r}")
    if s.schedule not in ("exponential", "step", "cosine", "constant"):
        raise ValueError(f"unknown schedule {s.schedule!r}")
    if s.feature_norm not in ("none", "l2", "standardize"):
        raise ValueError(f"feature_norm must be none, l2 or standardize, got {s.feature_norm!r}")
    if s.epochs < 1 or s.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {s.epochs}, {s.batch_size}")
    if s.lr <= 0 or (s.schedule == "exponential" and s.final_lr <= 0):
        raise ValueError(f"learning rates must be > 0, got lr={s.lr}, final_lr={s.final_lr}")


class LinearProbe(nn.Linear):
    """``nn.Linear`` that first applies the feature normalisation it was trained with.

    ``forward(x [B, D]) -> logits [B, C]``. The standardisation statistics are buffers, so they
    travel with ``state_dict`` and ``.to(device)``.
    """

    feat_mean: Tensor
    feat_std: Tensor

    def __init__(self, in_features: int, num_classes: int, feature_norm: FeatureNorm = "none"):
        super().__init__(in_features, num_classes)
        self.feature_norm: FeatureNorm = feature_norm
        self.register_buffer("feat_mean", torch.zeros(in_features))
        self.register_buffer("feat_std", torch.ones(in_features))

    def normalize(self, x: Tensor) -> Tensor:
        """Apply the probe's feature normalisation: ``[B, D] -> [B, D]``."""
        if self.feature_norm == "l2":
            return F.normalize(x, dim=1)
        if self.feature_norm == "standardize":
            return (x - self.feat_mean) / self.feat_std
        return x

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.normalize(x))


def _check_inputs(x: Tensor, y: Tensor, num_classes: int) -> None:
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"train_x must be a non-empty [N, D] tensor, got shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"train_y must have shape [{x.shape[0]}], got {tuple(y.shape)}")
    if y.dtype.is_floating_point:
        raise ValueError(f"train_y must hold integer class ids, got dtype {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(
            f"train_y values must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]"
        )


def train_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    preset: str | ProbeSettings = "adam",
    epochs: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    *,
    feature_norm: FeatureNorm | None = None,
) -> LinearProbe:
    """Train a linear classifier on cached features with cross-entropy.

    Args:
        train_x: features ``[N, D]`` (any float dtype; trained in float32).
        train_y: integer labels ``[N]`` in ``[0, num_classes)``.
        num_classes: C.
        preset: ``"adam"`` | ``"sgd"`` or a :class:`ProbeSettings`.
        epochs: overrides the preset's epoch count (schedules stretch with it).
        seed: seeds weight init and the per-epoch shuffles.
        device: where to train; the features are moved there once.
        feature_norm: overrides the preset's feature normalisation.

    Returns:
        The trained :class:`LinearProbe` (an ``nn.Linear``) in eval mode, on ``device``.
    """
    s = get_probe_settings(preset, epochs=epochs, feature_norm=feature_norm)
    _check_inputs(train_x, train_y, num_classes)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)

    x = train_x.detach().to(device=device, dtype=torch.float32)
    y = train_y.detach().to(device=device, dtype=torch.long)
    n, dim = x.shape

    probe = LinearProbe(dim, num_classes, s.feature_norm)
    with torch.no_grad():
        # PyTorch's default nn.Linear init, drawn from the seeded generator.
        nn.init.kaiming_uniform_(probe.weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(probe.bias, -bound, bound, generator=gen)
        if s.feature_norm == "standardize":
            probe.feat_mean.copy_(x.mean(0))
            # Constant dimensions get std 1 so they map to 0 instead of NaN.
            std = x.std(0, unbiased=False)
            probe.feat_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
    probe.to(device)
    # Normalise once: the probe's own normalisation is then skipped inside the loop.
    x = probe.normalize(x)

    opt: torch.optim.Optimizer
    if s.optimizer == "adam":
        opt = torch.optim.Adam(probe.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    else:
        opt = torch.optim.SGD(
            probe.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )

    probe.train()
    for epoch in range(s.epochs):
        for group in opt.param_groups:
            group["lr"] = s.lr_at(epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, s.batch_size):
            idx = perm[start : start + s.batch_size]
            logits = F.linear(x[idx], probe.weight, probe.bias)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    probe.eval()
    return probe


@torch.no_grad()
def predict(
    probe: nn.Module,
    x: Tensor,
    *,
    batch_size: int = 8192,
    return_logits: bool = False,
) -> Tensor:
    """Class predictions ``[M]`` (int64, CPU) for features ``x [M, D]``.

    With ``return_logits=True`` returns float32 CPU logits ``[M, C]`` instead. Runs on the
    probe's device in chunks of ``batch_size`` rows.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [M, D], got shape {tuple(x.shape)}")
    param = next(probe.parameters())
    was_training = probe.training
    probe.eval()
    out = []
    # max(..., 1): an empty input still yields one (empty) chunk with the right shape/dtype.
    for start in range(0, max(x.shape[0], 1), batch_size):
        chunk = x[start : start + batch_size].to(device=param.device, dtype=torch.float32)
        logits = probe(chunk)
        out.append(logits.float().cpu() if return_logits else logits.argmax(1).cpu())
    probe.train(was_training)
    return torch.cat(out)
