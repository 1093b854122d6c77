"""The pretraining loop: method-agnostic, resumable, single-process or data-parallel."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from geoharmony import distributed as gh_dist
from geoharmony.config import Config, ConfigError, from_dict, to_dict
from geoharmony.data.augment import (
    NORM_STATS,
    BatchedSimCLRAugment,
    eval_transform,
    imagenet_two_view_transform,
    normalize_only,
)
from geoharmony.data.build import RunData
from geoharmony.data.datasets import IndexedFileDataset, IndexedImageArray
from geoharmony.data.sources import ImageArray
from geoharmony.engine.checkpoint import (
    checkpoint_path,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from geoharmony.engine.logger import RunLogger
from geoharmony.engine.memory_format import MIN_STRIDED_1X1_IN_CHANNELS, channels_last_blockers
from geoharmony.engine.monitor import KNNMonitor
from geoharmony.engine.run_lock import RunLock
from geoharmony.engine.runtime import Runtime, autocast_dtype, capture_rng, restore_rng
from geoharmony.engine.schedules import learning_rate
from geoharmony.engine.stream import FileTrainStream, InMemoryTrainStream, TrainStream
from geoharmony.eval import prior_agreement
from geoharmony.methods import DataInfo, Method, TrainContext, build_method
from geoharmony.models.sync_bn import convert_sync_batchnorm
from geoharmony.prior import BankPrior, effective_number

__all__ = [
    "NonFiniteLossError",
    "TrainState",
    "Trainer",
    "config_differences",
    "cpu_bf16_gradient_hint",
    "non_finite_gradients",
    "norm_stats",
]

log = logging.getLogger(__name__)

# Config keys that may change between a run and its resumption without changing the result.
_RUNTIME_KEYS = {
    "train.device",
    "train.threads",
    "train.progress",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "data.num_workers",
    "data.root",
    "eval.monitor_every",
}


class NonFiniteLossError(RuntimeError):
    """The loss or its gradients became NaN or infinite; the run stopped without writing a
    checkpoint."""


def non_finite_gradients(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters whose gradient holds NaN/inf (or whose norm overflows
    fp32), in registration order; one norm per parameter (~0.2% of a CPU training step,
    ``benchmarks/grad_check_cost.py``).

    Why: seen on an AMX CPU, oneDNN's bf16 weight gradient of a strided convolution over 1x1
    feature maps (an ImageNet-stem ResNet on 16-pixel images) is garbage, now and then NaN,
    while the loss is finite.
    """
    named = [(n, p.grad) for n, p in module.named_parameters() if p.grad is not None]
    if not named:
        return []
    finite = torch.isfinite(torch.stack([g.detach().float().norm() for _, g in named]))
    if bool(finite.all()):
        return []
    return [n for (n, _), ok in zip(named, finite.tolist(), strict=True) if not ok]


def cpu_bf16_gradient_hint(autocast: torch.dtype | None, device: torch.device) -> str:
    """The likely fix for non-finite gradients from a finite loss ("" if it does not apply)."""
    if autocast == torch.bfloat16 and device.type == "cpu":
        return (
            " bf16 autocast on the CPU: train.precision=fp32 avoids oneDNN's unreliable bf16"
            " gradients of strided convolutions over 1x1 feature maps."
        )
    return ""


@dataclass
class TrainState:
    """Where a run stands: completed epochs and optimizer steps."""

    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def norm_stats(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return NORM_STATS.get(cfg.data.source, NORM_STATS["imagenet"])


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(a: Config, b: Config, ignore: set[str]) -> list[str]:
    """``key: a -> b`` for every differing key outside ``ignore``."""
    fa, fb = _flatten(to_dict(a)), _flatten(to_dict(b))
    return [
        f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}"
        for k in sorted(set(fa) | set(fb))
        if k not in ignore and fa.get(k) != fb.get(k)
    ]


class Trainer:
    """Pretrain ``cfg.method`` (+GH when enabled) on ``data``, writing into ``output_dir``.

    Args:
        resume: ``auto`` continues from the newest valid checkpoint in ``output_dir`` if there
            is one; ``never`` refuses a directory that has checkpoints; ``must`` requires one.
        init_from: a checkpoint of another run to start from (paired comparisons: a +GH run
            continuing its baseline's run at the end of the GH warm-up). Ignored when this run
            has checkpoints of its own.
        stop_after: stop once this many epochs are complete (a pause; the run stays resumable).
    """

    def __init__(
        self,
        cfg: Config,
        data: RunData,
        output_dir: str | Path,
        runtime: Runtime,
        resume: str = "auto",
        init_from: str | Path | None = None,
        stop_after: int | None = None,
    ) -> None:
        if resume not in ("auto", "never", "must"):
            raise ValueError(f"resume must be auto, never or must, got {resume!r}")
        self.cfg, self.data, self.runtime = cfg, data, runtime
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.stop_after = stop_after
        self.device = runtime.device
        self.method = build_method(
            cfg,
            DataInfo.of(data),
            runtime.distributed,
        ).to(self.device)
        self.channels_last = cfg.train.channels_last and self._channels_last_allowed()
        if self.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        if cfg.train.sync_batchnorm and runtime.distributed:
            self.method = convert_sync_batchnorm(self.method, self.device)  # type: ignore[assignment]
        self.model: nn.Module = self.method
        if runtime.distributed:
            self.model = DistributedDataParallel(
                self.method,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.method.ddp_find_unused_parameters,
            )
        self.optimizer = torch.optim.SGD(
            self.method.parameters(),
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
        )
        self.autocast_dtype = autocast_dtype(cfg.train.precision, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type,
            enabled=self.autocast_dtype == torch.float16 and self.device.type == "cuda",
        )
        self.state = TrainState()
        self.stream = self._build_stream()
        self.logger = RunLogger(self.output_dir, enabled=runtime.is_main)
        self.monitor = KNNMonitor.maybe_build(cfg, data, self.device, norm_stats(cfg))
        self._restore(resume, init_from)
        self.method.bind(TrainContext(self._pretrain_features))

    # ----- set-up ---------------------------------------------------------------------------
    def _build_stream(self) -> TrainStream:
        cfg, data, rt = self.cfg, self.data, self.runtime
        mean, std = norm_stats(cfg)
        if isinstance(data.train, ImageArray):
            dataset = IndexedImageArray(data.train, data.pretrain_indices)
            size = cfg.data.image_size or int(dataset.images.shape[-1])
            return InMemoryTrainStream(
                dataset,
                BatchedSimCLRAugment(size, mean, std),
                cfg.optim.batch_size,
                cfg.train.seed,
                self.device,
                rt.rank,
                rt.world_size,
                view_hook=self.method.view_hook(),
            )
        transform = imagenet_two_view_transform(
            cfg.data.image_size or 224, mean, std, hook=self.method.image_hook()
        )
        return FileTrainStream(
            IndexedFileDataset(data.train, data.pretrain_indices),
            transform,
            cfg.optim.batch_size,
            cfg.train.seed,
            self.device,
            rt.rank,
            rt.world_size,
            cfg.data.num_workers,
        )

    def _restore(self, resume: str, init_from: str | Path | None) -> None:
        found = latest_valid_checkpoint(self.checkpoint_dir, self.device)
        if found is None and list_checkpoints(self.checkpoint_dir):
            raise RuntimeError(f"no valid checkpoint in {self.checkpoint_dir}: all are corrupt")
        if found is not None:
            if resume == "never":
                raise RuntimeError(
                    f"{self.output_dir} already holds checkpoints; resume it or pick a new "
                    "output directory"
                )
            path, state = found
            diffs = config_differences(from_dict(state["config"]), self.cfg, _RUNTIME_KEYS)
            if diffs:
                raise ConfigError(
                    f"cannot resume {path}: the config differs from the stored one: "
                    + "; ".join(diffs)
                )
            self._load_state(state, full=True)
            self.logger.rewind({"train": self.state.global_step, "epoch": self.state.epoch})
            log.info("resumed from %s (epoch %d)", path, self.state.epoch)
            return
        if resume == "must":
            raise RuntimeError(f"resume was required but {self.checkpoint_dir} has no checkpoint")
        if init_from is not None:
            state = load_checkpoint(init_from, self.device)
            self._load_state(state, full=False)
            log.info("initialised from %s (epoch %d)", init_from, self.state.epoch)

    def _load_state(self, state: dict[str, Any], full: bool) -> None:
        """Load a checkpoint; ``full=False`` takes another run's weights, optimizer and epoch
        but keeps this run's own additions (e.g. the GH term a baseline did not have)."""
        missing, unexpected = self.method.load_state_dict(state["model"], strict=full)
        own_only = [k for k in missing if not k.startswith("gh.")]
        if own_only or unexpected:
            raise RuntimeError(
                f"checkpoint does not fit this model: missing {own_only[:5]}, unexpected "
                f"{unexpected[:5]}"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState(state["epoch"], state["global_step"], state.get("history", []))
        restore_rng(state["rng"])
        gh = self.method.gh
        if not full and gh is not None and any(k.startswith("gh.") for k in missing):
            self._prime_prior()

    @torch.no_grad()
    def _prime_prior(self) -> None:
        """Fill a fresh prior estimator with the current model's logits over one epoch.

        Used when a +GH run starts from a baseline checkpoint, which never estimated a prior:
        afterwards the bank holds the model's current logits, which is what the paper's EMA
        (momentum 0.9 over hundreds of warm-up epochs) holds. BatchNorm buffers are restored so
        the pass leaves no trace but the prior.
        """
        gh = self.method.gh
        assert gh is not None
        saved = {k: v.clone() for k, v in self.method.named_buffers() if not k.startswith("gh.")}
        self.method.train()
        if isinstance(gh.prior, BankPrior):
            gh.prior.active_momentum = 0.0
        for view1, _, indices in self.stream.batches(max(self.state.epoch - 1, 0)):
            with torch.autocast(self.device.type, self.autocast_dtype, self._autocast_on):
                z1 = self.method.embed(self._layout(view1))
            gh.prior.update(indices, gh.loss.logits(z1))
        gh.prior.refresh()
        gh.on_epoch_start(self.state.epoch)  # restores the scheduled momentum
        buffers = dict(self.method.named_buffers())
        for key, value in saved.items():
            buffers[key].copy_(value)

    @torch.no_grad()
    def _pretrain_features(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` over every pretraining image (normalised, no augmentation), ``[N, D]`` in
        dataset-index order; file-backed sources are decoded by data-loader workers."""
        mean, std = norm_stats(self.cfg)
        batch_size = self.cfg.eval.batch_size
        batches: Iterable[torch.Tensor]
        if isinstance(self.data.train, ImageArray):
            images = self.data.train.images[torch.from_numpy(self.data.pretrain_indices)]
            batches = (
                normalize_only(images[i : i + batch_size].to(self.device), mean, std)
                for i in range(0, len(images), batch_size)
            )
        else:
            transform = eval_transform(self.cfg.data.image_size or 224, mean, std)
            dataset = IndexedFileDataset(self.data.train, self.data.pretrain_indices, transform)
            loader = DataLoader(
                dataset, batch_size=batch_size, num_workers=self.cfg.data.num_workers
            )
            batches = (images.to(self.device) for images, _, _ in loader)
        chunks = []
        for batch in batches:
            with torch.autocast(self.device.type, self.autocast_dtype, self._autocast_on):
                chunks.append(fn(self._layout(batch)).float())
        return torch.cat(chunks)

    # ----- the loop -----------------------------------------------------------------------
    @property
    def _autocast_on(self) -> bool:
        return self.autocast_dtype is not None

    def _channels_last_allowed(self) -> bool:
        blockers = channels_last_blockers(self.method, self.device)
        if blockers:
            log.warning(
                "train.channels_last ignored: oneDNN crashes or hangs in the backward pass of "
                "strided 1x1 convolutions with fewer than %d input channels in channels_last "
                "(%s); training in the contiguous format (a wider model.width keeps it)",
                MIN_STRIDED_1X1_IN_CHANNELS,
                ", ".join(blockers),
            )
        return not blockers

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def fit(self) -> Method:
        """Train until ``optim.epochs`` (or ``stop_after``) epochs are complete."""
        cfg = self.cfg
        last = (
            cfg.optim.epochs if self.stop_after is None else min(self.stop_after, cfg.optim.epochs)
        )
        # Every rank of a distributed run shares the folder; rank 0 alone writes to it.
        lock = RunLock(self.output_dir) if self.runtime.is_main else contextlib.nullcontext()
        try:
            with lock:
                while self.state.epoch < last:
                    self._run_epoch(self.state.epoch)
                    self.state.epoch += 1
                    done = self.state.epoch
                    on_grid = done % max(cfg.train.checkpoint_every, 1) == 0
                    # The end of the GH warm-up is where paired +GH runs branch off (--init-from).
                    if on_grid or done == last or done == cfg.gh.warmup_epochs:
                        self.save()
        finally:
            self.logger.close()
        return self.method

    def _run_epoch(self, epoch: int) -> None:
        cfg, method = self.cfg, self.method
        steps = self.stream.steps_per_epoch
        method.train()
        method.on_epoch_start(epoch)
        progress = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
            # None: tqdm draws only on a terminal (no bar frames in redirected logs).
            disable=None if cfg.train.progress and self.runtime.is_main else True,
            leave=False,
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        images_seen = 0
        loss_sum = torch.zeros((), device=self.device)
        for step, (view1, view2, indices) in enumerate(self.stream.batches(epoch)):
            fractional = epoch + step / steps
            lr = learning_rate(cfg, fractional)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(self.device.type, self.autocast_dtype, self._autocast_on):
                out = self.model(self._layout(view1), self._layout(view2), indices, fractional)
            if not self._finite_everywhere(out.loss):
                details = {k: float(v) for k, v in out.logs.items()}
                raise NonFiniteLossError(
                    f"loss is {float(out.loss.detach())} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {lr:.4g}; terms {details}); stopped without saving. The newest "
                    f"checkpoint in {self.checkpoint_dir} holds the last good state."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out.loss).backward()
            if not self.scaler.is_enabled():  # fp16's scaler skips such steps itself
                self._check_gradients(f"epoch {epoch + 1}, step {step + 1}")
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.global_step += 1
            images_seen += view1.shape[0] * self.runtime.world_size
            loss_sum += out.loss.detach()
            if self.state.global_step % max(cfg.train.log_every, 1) == 0:
                rate = images_seen / max(time.perf_counter() - started, 1e-9)
                logged = self._global_means({"loss": out.loss.detach(), **out.logs})
                values = {k: float(v) for k, v in logged.items()}
                values.update(lr=lr, images_per_s=rate, epoch=fractional)
                self.logger.log("train", self.state.global_step, values)
                progress.set_postfix(
                    loss=f"{values['loss']:.3f}", lr=f"{lr:.3g}", ips=f"{rate:.0f}"
                )
            progress.update(1)
        progress.close()
        method.on_epoch_end(epoch)
        summary = {
            "epoch": epoch + 1,
            "loss": float(self._global_means({"loss": loss_sum})["loss"]) / max(steps, 1),
            "seconds": time.perf_counter() - started,
            "images_per_s": images_seen / max(time.perf_counter() - started, 1e-9),
        }
        summary.update(self._prior_summary())
        if (
            self.monitor is not None
            and self.runtime.is_main
            and (epoch + 1) % self.monitor.every == 0
        ):
            summary.update(self.monitor.evaluate(method))
        self.state.history.append(summary)
        self.logger.log("epoch", epoch + 1, summary)
        if self.runtime.is_main:
            shown = ", ".join(
                f"{k} {v:.4g}" for k, v in summary.items() if k != "epoch" and isinstance(v, float)
            )
            log.info("epoch %d/%d: %s", epoch + 1, cfg.optim.epochs, shown)

    def _check_gradients(self, where: str) -> None:
        """Stop before a step that would write NaN/inf into the weights from a finite loss
        (DDP's gradients are all-reduced, so every rank agrees)."""
        culprits = non_finite_gradients(self.method)
        if not culprits:
            return
        raise NonFiniteLossError(
            f"non-finite gradients at {where} (finite loss) in {len(culprits)} parameters, "
            f"first {', '.join(culprits[:3])}; stopped without saving. The newest checkpoint in "
            f"{self.checkpoint_dir} holds the last good state."
            + cpu_bf16_gradient_hint(self.autocast_dtype, self.device)
        )

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank: all ranks stop together, none is left
        waiting in a gradient all-reduce."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.runtime.distributed:
            gh_dist.all_reduce_max(bad)
        return not bool(bad)

    def _global_means(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Average scalar tensors over ranks (each rank's losses cover its own shard only)."""
        if not self.runtime.distributed or not values:
            return values
        stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        gh_dist.all_reduce_sum(stacked)
        stacked /= self.runtime.world_size
        return dict(zip(values, stacked.unbind(), strict=True))

    def _prior_summary(self) -> dict[str, float]:
        gh = self.method.gh
        if gh is None:
            return {}
        prior = gh.prior.prior().detach().cpu()
        out = {
            "prior_effective_anchors": effective_number(prior),
            "prior_max_share": float(prior.max()),
        }
        if sum(self.data.class_counts) > 0:
            # Anchors are unordered: compare the shapes (both sorted), KL(true || estimated).
            agreement = prior_agreement(prior, self.data.class_counts, align="sorted")
            out["true_effective_classes"] = agreement["effective_number_true"]
            out["prior_kl_to_true"] = agreement["kl"]
        return out

    # ----- checkpoints --------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "history": self.state.history,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "config": to_dict(self.cfg),
            "data": self.data.record(),
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the completed epochs (main process) and prune old ones,
        keeping the newest ``train.keep_checkpoints`` and the one at the end of the GH warm-up."""
        if not self.runtime.is_main:
            return None
        path = checkpoint_path(self.checkpoint_dir, self.state.epoch)
        save_checkpoint(path, self.checkpoint_state())
        # The checkpoint at the end of the GH warm-up is kept: paired +GH runs start from it.
        pairing_point = checkpoint_path(self.checkpoint_dir, self.cfg.gh.warmup_epochs)
        keep = max(self.cfg.train.keep_checkpoints, 1)
        for old in list_checkpoints(self.checkpoint_dir)[:-keep]:
            if old != pairing_point:
                old.unlink(missing_ok=True)
        return path
