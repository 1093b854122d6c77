"""A cheap kNN accuracy monitor on small balanced labelled subsets, run every few epochs."""

from __future__ import annotations

import numpy as np
import torch

from geoharmony.config import Config
from geoharmony.data.build import RunData
from geoharmony.data.longtail import balanced_indices
from geoharmony.data.splits import ImageSplit
from geoharmony.eval import class_groups, extract_features, knn_predict, per_class_accuracy
from geoharmony.methods import Method

__all__ = ["KNNMonitor"]


class KNNMonitor:
    """kNN accuracy (overall and per Many/Medium/Few group) of the current backbone."""

    def __init__(self, cfg: Config, data: RunData, device: torch.device) -> None:
        e = cfg.eval
        self.every = e.monitor_every
        self.data = data
        self.train_idx = balanced_indices(data.train.labels_of(), e.monitor_train_per_class, 1)
        self.test_idx = balanced_indices(data.test.labels_of(), e.monitor_test_per_class, 2)
        self.train_labels = torch.from_numpy(data.train.labels_of(self.train_idx))
        self.test_labels = torch.from_numpy(data.test.labels_of(self.test_idx))
        self.num_classes = data.num_classes
        self.groups = class_groups(data.class_counts, e.group_rule)  # type: ignore[arg-type]
        self.k, self.temperature = e.knn_k, e.knn_temperature
        self.device, self.batch_size = device, e.batch_size

    @classmethod
    def maybe_build(cls, cfg: Config, data: RunData, device: torch.device) -> KNNMonitor | None:
        """A monitor for labelled data with ``eval.monitor_every > 0``, else None."""
        if cfg.eval.monitor_every <= 0 or not data.labelled:
            return None
        return cls(cfg, data, device)

    def _features(self, method: Method, split: ImageSplit, indices: np.ndarray) -> torch.Tensor:
        batches = self.data.eval_batches(split, indices, self.batch_size, self.device)
        return extract_features(method.backbone, batches, device=self.device, preprocess=None)

    def evaluate(self, method: Method) -> dict[str, float]:
        pred = knn_predict(
            self._features(method, self.data.train, self.train_idx),
            self.train_labels,
            self._features(method, self.data.test, self.test_idx),
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
