"""Fine-tune Mask R-CNN from a pretrained backbone on a COCO-format set, then score it.

One run is one output folder: ``checkpoint.ckpt`` (the newest state, written atomically every
``train.checkpoint_every`` iterations and at a pause), ``metrics.json`` and ``model.pt`` when it
ends. Started again on the same folder with the same settings, a run continues from its
checkpoint and ends as the uninterrupted run would: the images, flips and every random draw of
an iteration follow from ``(seed, iteration)``, not from what ran before.

``metrics.json`` times the run two ways: ``train_seconds`` adds up the iterations' computation
(waits for images excluded), and each logged window of ``history`` has its wall-clock
``seconds_per_iteration``.

Under torchrun every process takes its share of each iteration's batch; BatchNorm in the backbone
and the FPN is synchronised across processes (the protocol's SyncBN), the gradients are averaged
by DDP, and evaluation shares out the validation images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.models.detection import MaskRCNN
from tqdm import tqdm

from geoharmony import parallel
from geoharmony.config import ConfigError
from geoharmony.data.splits import DataFormatError
from geoharmony.data.stream import batch_split_problem, derived_seed, epoch_order
from geoharmony.detection.coco import CocoInstances, find_split, load_instances
from geoharmony.detection.config import DetectionConfig, config_dict
from geoharmony.detection.dataset import DetectionSplit, collate
from geoharmony.detection.evaluate import evaluate_detector
from geoharmony.detection.model import DetectionBackbone, build_mask_rcnn
from geoharmony.engine.checkpoint import load_checkpoint, save_checkpoint
from geoharmony.engine.numerics import NonFiniteLossError
from geoharmony.engine.runtime import Runtime, autocast_dtype, resolve_precision
from geoharmony.models.sync_bn import convert_sync_batchnorm

__all__ = ["CHECKPOINT", "DetectionSets", "build_detector", "load_sets", "run_detection"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.ckpt"
# Settings that do not change what a run computes: a run may continue under other values.
_FREE_KEYS = {"progress", "threads", "device", "workers", "log_every", "eval_batch_size"}


@dataclass(frozen=True)
class DetectionSets:
    """The training and validation splits of one COCO-format set, checked."""

    train: DetectionSplit
    val: DetectionSplit

    @property
    def num_classes(self) -> int:
        return len(self.train.labels)

    def record(self) -> dict[str, Any]:
        return {
            "root": str(self.train.instances.path.parent.parent),
            "train_images": len(self.train),
            "val_images": len(self.val),
            "categories": list(self.train.instances.categories.values()),
        }


def load_sets(root: str | Path, cfg: DetectionConfig, channels: int) -> DetectionSets:
    """Check both annotation files (and that every image exists) before any model is built.

    Raises:
        DataFormatError: a missing or malformed file, naming it and the field.
    """
    instances: dict[str, tuple[CocoInstances, Path]] = {}
    for name in (cfg.data.train_split, cfg.data.val_split):
        path, images = find_split(root, name)
        instances[name] = (load_instances(path, images), images)
    (train, train_images), (val, val_images) = instances.values()
    if train.categories != val.categories:
        raise DataFormatError(
            f"{val.path}: categories differ from {train.path}'s (ids and names must match)"
        )
    sets = DetectionSets(
        DetectionSplit(train, train_images, channels, train=True),
        DetectionSplit(val, val_images, channels),
    )
    if len(sets.train) == 0:
        raise DataFormatError(f"{train.path}: no image has an object to train on")
    return sets


class _IterationBatches:
    """This process's ``[(image index, flip), ...]`` for iterations ``start`` to ``end - 1``.

    Iteration ``i`` reads positions ``i * B`` to ``(i + 1) * B - 1`` of an endless stream made of
    seeded permutations of the images (one per pass); process ``r`` of ``W`` takes every
    ``W``-th of them from the ``r``-th. Each position's flip is a seeded coin."""

    def __init__(
        self, n: int, batch: int, seed: int, flip: bool, start: int, end: int, rank: int, world: int
    ) -> None:
        self.n, self.batch, self.seed, self.flip = n, batch, seed, flip
        self.start, self.end, self.rank, self.world = start, end, rank, world
        self._pass: tuple[int, Tensor] | None = None  # the last pass's permutation, kept

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def _key(self, position: int) -> tuple[int, bool]:
        epoch, offset = divmod(position, self.n)
        if self._pass is None or self._pass[0] != epoch:
            self._pass = (epoch, epoch_order(self.n, self.seed, epoch))
        index = int(self._pass[1][offset])
        coin = np.random.default_rng(derived_seed(self.seed, 0xF11, position)).random()
        return index, bool(self.flip and coin < 0.5)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for i in range(self.start, self.end):
            first = i * self.batch
            yield [self._key(p) for p in range(first + self.rank, first + self.batch, self.world)]


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Normalisation layers' scales and shifts without weight decay (detectron2's
    ``WEIGHT_DECAY_NORM = 0``), every other parameter with it."""
    norm: list[nn.Parameter] = []
    other: list[nn.Parameter] = []
    for module in model.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm)
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (norm if is_norm else other).append(p)
    return [
        {"params": other, "weight_decay": weight_decay},
        {"params": norm, "weight_decay": 0.0},
    ]


def _check_resumable(saved: dict[str, Any], cfg: DetectionConfig, source: str, out: Path) -> None:
    """A checkpoint continues only the run it belongs to: same backbone, same settings."""
    problems = []
    if saved["backbone_source"] != source:
        problems.append(f"backbone {saved['backbone_source']} (now {source})")
    now = config_dict(cfg)
    for section, values in saved["config"].items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key not in _FREE_KEYS and now[section].get(key) != value:
                problems.append(f"{section}.{key}={value!r} (now {now[section].get(key)!r})")
    if problems:
        raise ConfigError(
            f"{out / CHECKPOINT} belongs to a run with other settings: {'; '.join(problems)}. "
            "Use another --output, or delete the checkpoint to start over"
        )


def build_detector(cfg: DetectionConfig, backbone: DetectionBackbone, num_classes: int) -> MaskRCNN:
    """Mask R-CNN on ``backbone`` with the sizes and counts of ``cfg``."""
    m = cfg.model
    return build_mask_rcnn(
        backbone.body,
        num_classes,
        backbone.mean,
        backbone.std,
        cfg.data.train_min_sizes,
        cfg.data.max_size,
        m.fpn_channels,
        m.anchor_sizes,
        (m.rpn_proposals_train, m.rpn_proposals_test),
        m.roi_samples_per_image,
    )


def _losses_checked(losses: dict[str, Tensor], iteration: int) -> Tensor:
    total = sum(losses.values(), torch.zeros(()))
    if not bool(torch.isfinite(total)):
        parts = ", ".join(f"{k} {float(v):.4g}" for k, v in losses.items())
        raise NonFiniteLossError(
            f"detection loss is not finite at iteration {iteration + 1} ({parts}); try a "
            "lower optim.lr or a longer optim.warmup_iterations"
        )
    return total


@dataclass
class _Progress:
    """Where a run stands: iterations done, the logged windows, seconds in iterations."""

    iteration: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def _resume(
    out: Path,
    cfg: DetectionConfig,
    source: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
) -> _Progress:
    """The checkpoint's state loaded into ``model`` and ``optimizer`` (a fresh start without)."""
    checkpoint = out / CHECKPOINT
    if not checkpoint.is_file():
        return _Progress()
    saved = load_checkpoint(checkpoint, map_location=runtime.device)
    _check_resumable(saved, cfg, source, out)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if runtime.is_main:
        print(f"continuing {out} from iteration {saved['iteration']} of {cfg.optim.iterations}")
    return _Progress(int(saved["iteration"]), list(saved["history"]), saved["train_seconds"])


def _train(
    cfg: DetectionConfig,
    model: nn.Module,
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    runtime: Runtime,
    progress: _Progress,
    end: int,
    save: Callable[[], None],
) -> None:
    """Iterations ``progress.iteration`` to ``end - 1`` of ``trained`` (``model``, or its DDP
    wrapper); logs a window every ``train.log_every``, calls ``save`` every
    ``train.checkpoint_every`` and at ``end``."""
    o, device = cfg.optim, runtime.device
    autocast = autocast_dtype(cfg.train.precision, device)
    bar = tqdm(
        total=o.iterations,
        initial=progress.iteration,
        desc="detect",
        disable=not (cfg.train.progress and runtime.is_main),
        dynamic_ncols=True,
    )
    window: dict[str, float] = {}
    window_start, window_count = time.perf_counter(), 0
    trained.train()
    for iteration, (images, targets) in zip(range(progress.iteration, end), loader, strict=True):
        began = time.perf_counter()
        # Every random draw of the iteration (image sizes, sampled anchors and regions) follows
        # from (seed, rank, iteration): a continued run draws what the whole run would.
        torch.manual_seed(derived_seed(cfg.train.seed, runtime.rank, iteration))
        lr = o.lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, autocast, enabled=autocast is not None):
            losses = trained(images, targets)
        losses = {k: v.float() for k, v in losses.items()}
        total = _losses_checked(losses, iteration)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        progress.train_seconds += time.perf_counter() - began
        progress.iteration = done = iteration + 1
        for k, v in (*losses.items(), ("loss", total)):
            window[k] = window.get(k, 0.0) + float(v.detach())
        window_count += 1
        bar.update(1)
        if done % cfg.train.log_every == 0 or done == end:
            per_iteration = (time.perf_counter() - window_start) / window_count
            entry = {k: v / window_count for k, v in window.items()}
            progress.history.append(
                {"iteration": done, "lr": lr, **entry, "seconds_per_iteration": per_iteration}
            )
            bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{lr:.2g}")
            window, window_start, window_count = {}, time.perf_counter(), 0
        if done % cfg.train.checkpoint_every == 0 or done == end:
            save()
    bar.close()


def run_detection(
    cfg: DetectionConfig,
    backbone: DetectionBackbone,
    sets: DetectionSets,
    out: Path,
    runtime: Runtime,
    stop_after: int | None = None,
) -> dict[str, Any] | None:
    """Train (or continue) and evaluate; returns the ``metrics.json`` dict on the main process
    once the run is complete (None on other processes, and after a pause at ``stop_after``
    iterations)."""
    device, o = runtime.device, cfg.optim
    if problem := batch_split_problem(o.batch_size, runtime.world_size):
        raise ConfigError(problem)
    model: nn.Module = build_detector(cfg, backbone, sets.num_classes)
    if runtime.distributed:
        model = convert_sync_batchnorm(model, device)
    model.to(device)
    optimizer = torch.optim.SGD(
        _parameter_groups(model, o.weight_decay), lr=o.lr, momentum=o.momentum
    )
    source = str(backbone.report["source"])
    progress = _resume(out, cfg, source, model, optimizer, runtime)
    end = o.iterations if stop_after is None else min(stop_after, o.iterations)
    trained = model
    if runtime.distributed:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    batches = _IterationBatches(
        len(sets.train),
        o.batch_size,
        cfg.train.seed,
        cfg.data.horizontal_flip,
        progress.iteration,
        end,
        runtime.rank,
        runtime.world_size,
    )
    loader = DataLoader(
        sets.train, batch_sampler=batches, collate_fn=collate, num_workers=cfg.data.workers
    )

    def save() -> None:
        if runtime.is_main:
            save_checkpoint(
                out / CHECKPOINT,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "iteration": progress.iteration,
                    "history": progress.history,
                    "train_seconds": progress.train_seconds,
                    "config": config_dict(cfg),
                    "backbone_source": source,
                },
            )
        parallel.barrier()

    _train(cfg, model, trained, optimizer, loader, runtime, progress, end, save)
    if end < o.iterations:
        if runtime.is_main:
            print(f"paused after iteration {end}; run the same command again to continue")
        return None
    model.transform.min_size = (cfg.data.test_min_size,)  # type: ignore[union-attr]
    started = time.perf_counter()
    autocast = autocast_dtype(cfg.train.precision, device)
    scores = evaluate_detector(model, sets.val, cfg.train.eval_batch_size, device, autocast)
    if scores is None:
        return None
    torch.save({"model": model.state_dict(), "config": config_dict(cfg)}, out / "model.pt")
    return {
        "task": "detection",
        "method": backbone.report["pretrained"].get("method"),
        "gh": backbone.report["pretrained"].get("gh"),
        **scores,
        "backbone": backbone.report,
        "dataset": sets.record(),
        "config": config_dict(cfg),
        "iterations": o.iterations,
        "world_size": runtime.world_size,
        "device": str(device),
        "precision": resolve_precision(cfg.train.precision, device),
        "train_seconds": progress.train_seconds,
        "seconds_per_iteration": progress.train_seconds / max(o.iterations, 1),
        "eval_seconds": time.perf_counter() - started,
        "history": progress.history,
    }
