"""The pretraining loop: method-agnostic, resumable, single-process or data-parallel.

The loop knows no method and no GH: what a method needs from it (priming after
``--init-from``, extra epoch logs, the checkpoints to keep) it asks for through the generic
hooks of :class:`~geoharmony.methods.Method`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from geoharmony import parallel
from geoharmony.config import Config, to_dict
from geoharmony.data.build import RunData
from geoharmony.data.stream import BatchPlan, TrainBatch, TrainStream, train_stream
from geoharmony.engine.checkpoint import checkpoint_path, list_checkpoints, save_checkpoint
from geoharmony.engine.logger import RunLogger
from geoharmony.engine.memory_format import MIN_STRIDED_1X1_IN_CHANNELS, channels_last_blockers
from geoharmony.engine.monitor import KNNMonitor
from geoharmony.engine.numerics import (
    NonFiniteLossError,
    cpu_bf16_gradient_hint,
    non_finite_gradients,
)
from geoharmony.engine.resume import StartingPoint, TrainState, starting_point
from geoharmony.engine.run_lock import RunLock
from geoharmony.engine.runtime import Runtime, autocast_dtype, capture_rng, restore_rng
from geoharmony.engine.schedules import learning_rate
from geoharmony.eval import extract_features
from geoharmony.methods import DataInfo, Method, TrainContext, build_method
from geoharmony.models.sync_bn import convert_sync_batchnorm

__all__ = ["TrainState", "Trainer"]

log = logging.getLogger(__name__)


class Trainer:
    """Pretrain ``cfg.method`` (+GH when enabled) on ``data``, writing into ``output_dir``.

    Args:
        resume: ``auto`` continues from the newest valid checkpoint in ``output_dir`` if there
            is one; ``never`` refuses a directory that has checkpoints; ``must`` requires one.
        init_from: a checkpoint of another run to start from (paired comparisons: a +GH run
            continuing its baseline's run at the end of the GH warm-up). Ignored when this run
            has checkpoints of its own.
        stop_after: stop once this many epochs are complete (a pause; the run stays resumable).

    Raises:
        ConfigError: resuming a run whose checkpoint was made with another config.
        RuntimeError: the resume policy forbids what is in ``output_dir``, or an
            ``init_from`` checkpoint does not fit the model.
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
        plan = BatchPlan(
            cfg.optim.batch_size, cfg.train.seed, self.device, runtime.rank, runtime.world_size
        )
        self.stream: TrainStream = train_stream(
            data, plan, view_hook=self.method.view_hook(), image_hook=self.method.image_hook()
        )
        self.logger = RunLogger(self.output_dir, enabled=runtime.is_main)
        self.monitor = KNNMonitor.maybe_build(cfg, data, self.device)
        start = starting_point(
            self.checkpoint_dir, cfg, self.device, resume, init_from, data.record()
        )
        needs_priming = self._start_from(start) if start.state is not None else False
        context = TrainContext(self._pretrain_features, self._replay_batches, self._autocast)
        self.method.bind(context)
        if needs_priming:
            self.method.prime(context)

    # ----- set-up ---------------------------------------------------------------------------
    def _start_from(self, start: StartingPoint) -> bool:
        """Restore a checkpoint: all of it for the run's own; for another run's, its weights,
        optimizer, epoch and RNG, the method keeping what it adds. Returns whether the method
        must prime those additions."""
        state = start.state
        assert state is not None
        needs_priming = False
        if start.own:
            self.method.load_state_dict(state["model"])
        else:
            needs_priming = self.method.adopt(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState(state["epoch"], state["global_step"], state.get("history", []))
        restore_rng(state["rng"])
        if start.own:
            self.logger.rewind({"train": self.state.global_step, "epoch": self.state.epoch})
            log.info("resumed from %s (epoch %d)", start.path, self.state.epoch)
        else:
            log.info("initialised from %s (epoch %d)", start.path, self.state.epoch)
        return needs_priming

    # ----- what the method may borrow (TrainContext) -----------------------------------------
    def _pretrain_features(self, module: nn.Module) -> Tensor:
        """``module`` (eval mode, no gradients) over every pretraining image, clean, ``[N, D]``
        in dataset-index order."""
        data = self.data
        batches = data.eval_batches(
            data.train, data.pretrain_indices, self.cfg.eval.batch_size, self.device
        )
        return extract_features(
            module,
            batches,
            device=self.device,
            preprocess=None,
            autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last,
        )

    def _replay_batches(self) -> Iterator[TrainBatch]:
        """The last completed epoch's training batches (the first epoch's before any)."""
        for view1, view2, indices in self.stream.batches(max(self.state.epoch - 1, 0)):
            yield self._layout(view1), self._layout(view2), indices

    def _autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, self.autocast_dtype, self._autocast_on)

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
                    if on_grid or done == last or done in self.method.milestone_epochs():
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
        terms = _TermMeans()
        lr = learning_rate(cfg, epoch)  # once per epoch, as the official loop sets it
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for step, (view1, view2, indices) in enumerate(self.stream.batches(epoch)):
            fractional = epoch + step / steps
            with self._autocast():
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
            terms.add(out.logs)
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
        summary.update(terms.means(self._global_means))
        summary.update(method.epoch_logs())
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
            parallel.all_reduce_max(bad)
        return not bool(bad)

    def _global_means(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Average scalar tensors over ranks (each rank's losses cover its own shard only)."""
        if not self.runtime.distributed or not values:
            return values
        stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        parallel.all_reduce_sum(stacked)
        stacked /= self.runtime.world_size
        return dict(zip(values, stacked.unbind(), strict=True))

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
        keeping the newest ``train.keep_checkpoints`` and the method's milestones (e.g. where
        paired +GH runs start)."""
        if not self.runtime.is_main:
            return None
        path = checkpoint_path(self.checkpoint_dir, self.state.epoch)
        save_checkpoint(path, self.checkpoint_state())
        milestones = {
            checkpoint_path(self.checkpoint_dir, e) for e in self.method.milestone_epochs()
        }
        keep = max(self.cfg.train.keep_checkpoints, 1)
        for old in list_checkpoints(self.checkpoint_dir)[:-keep]:
            if old not in milestones:
                old.unlink(missing_ok=True)
        return path


class _TermMeans:
    """Per-epoch means of the loss terms a method logs (``out.logs`` keys ending ``_loss``), so
    that the epoch line splits the total: a total that jumps as GH's weight ramps up reads as
    the GH term joining, not as the SSL loss diverging. A term is averaged over the steps that
    logged it (GH logs nothing before its warm-up ends)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.steps: dict[str, int] = {}

    def add(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            if key.endswith("_loss"):
                total = self.sums.get(key)
                value = value.detach().float()
                self.sums[key] = value if total is None else total + value
                self.steps[key] = self.steps.get(key, 0) + 1

    def means(
        self, over_ranks: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    ) -> dict[str, float]:
        """``{term: mean}``, each sum first averaged over ranks by ``over_ranks``."""
        return {k: float(v) / self.steps[k] for k, v in over_ranks(self.sums).items()}
