"""A cheap kNN accuracy monitor on small balanced labelled subsets, run every few epochs."""

from __future__ import annotations

import numpy as np
import torch

from geoharmony.config import Config
from geoharmony.data.augment import normalize_only
from geoharmony.data.build import RunData
from geoharmony.data.longtail import balanced_indices
from geoharmony.data.sources import ImageArray
from geoharmony.eval import class_groups, extract_features, knn_predict, per_class_accuracy
from geoharmony.methods import Method

__all__ = ["KNNMonitor"]


class KNNMonitor:
    """kNN accuracy (overall and per Many/Medium/Few group) of the current backbone."""

    def __init__(
        self,
        cfg: Config,
        data: RunData,
        device: torch.device,
        stats: tuple[tuple[float, ...], tuple[float, ...]],
    ) -> None:
        assert isinstance(data.train, ImageArray) and isinstance(data.test, ImageArray)
        e = cfg.eval
        self.every = e.monitor_every
        train_idx = balanced_indices(data.train.labels.numpy(), e.monitor_train_per_class, 1)
        test_idx = balanced_indices(data.test.labels.numpy(), e.monitor_test_per_class, 2)
        self.train_images = data.train.images[torch.from_numpy(train_idx)]
        self.train_labels = data.train.labels[torch.from_numpy(train_idx)]
        self.test_images = data.test.images[torch.from_numpy(test_idx)]
        self.test_labels = data.test.labels[torch.from_numpy(test_idx)]
        self.num_classes = data.num_classes
        self.groups = class_groups(data.class_counts, e.group_rule)  # type: ignore[arg-type]
        self.k, self.temperature = e.knn_k, e.knn_temperature
        self.device, self.stats, self.batch_size = device, stats, e.batch_size

    @classmethod
    def maybe_build(
        cls,
        cfg: Config,
        data: RunData,
        device: torch.device,
        stats: tuple[tuple[float, ...], tuple[float, ...]],
    ) -> KNNMonitor | None:
        """A monitor for labelled in-memory data with ``eval.monitor_every > 0``, else None."""
        if cfg.eval.monitor_every <= 0 or not isinstance(data.train, ImageArray):
            return None
        return cls(cfg, data, device, stats)

    def _features(self, method: Method, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats
        return extract_features(
            method.backbone,
            images,
            batch_size=self.batch_size,
            device=self.device,
            preprocess=lambda x: normalize_only(x, mean, std),
        )

    def evaluate(self, method: Method) -> dict[str, float]:
        pred = knn_predict(
            self._features(method, self.train_images),
            self.train_labels,
            self._features(method, self.test_images),
            self.num_classes,
            k=min(self.k, len(self.train_labels)),
            temperature=self.temperature,
        )
        acc = per_class_accuracy(pred, self.test_labels, self.num_classes)
        out = {"monitor_knn_avg": float(np.nanmean(acc))}
        for gid, name in enumerate(("many", "medium", "few")):
            members = acc[self.groups == gid]
            if members.size:
                out[f"monitor_knn_{name}"] = float(np.nanmean(members))
        return out
