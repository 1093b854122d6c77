"""Before the first step: every setting whose size must fit the data, checked at once.

A batch larger than the data set (epochs without a step), more probe or monitor images per
class than a class has, what the method itself needs (GH's anchors, DnC's experts, through its
:meth:`~geoharmony.methods.Method.data_problems` hook): each would stop a run late or let it
train nothing. They are found here, before training, and reported together, each with the
numbers and the setting that fixes it.
"""

from __future__ import annotations

import numpy as np

from geoharmony.config import Config, ConfigError
from geoharmony.data.build import RunData
from geoharmony.data.splits import ImageSplit
from geoharmony.data.stream import batch_split_problem
from geoharmony.methods import DataInfo
from geoharmony.methods.registry import resolve_method

__all__ = ["check_sizes", "shots_problem", "size_problems"]


def shots_problem(
    key: str,
    shots: int | None,
    split: ImageSplit,
    where: str,
    alternative: str,
    exclude: np.ndarray | None = None,
) -> str | None:
    """Why ``shots`` images of every class of ``split`` (outside ``exclude``) cannot be drawn,
    naming the setting ``key`` and the ``alternative`` fix; None when they can. ``shots`` None
    (every image) still needs one image of each class outside ``exclude``."""
    if shots is None and exclude is None:
        return None
    needed = 1 if shots is None else shots
    shown = "null" if shots is None else shots
    labels = split.labels_of()
    allowed = np.ones(labels.shape[0], dtype=bool)
    if exclude is not None:
        allowed[exclude] = False
    present = np.unique(labels)
    if not present.size:
        return f"{key}={shown}: the {where} holds no images; {alternative}"
    available = np.bincount(labels[allowed], minlength=split.num_classes)[present]
    fewest = int(available.argmin())
    have = int(available[fewest])
    if needed <= have:
        return None
    name = split.class_names[int(present[fewest])]
    fix = f"set {key} to at most {have}, or {alternative}" if have else alternative
    return (
        f"{key}={shown}: class {name!r} has only {have} image{'' if have == 1 else 's'} in the "
        f"{where} (the fewest of its {present.size} classes); {fix}"
    )


def size_problems(
    cfg: Config, data: RunData, world_size: int = 1, evaluate: bool = True
) -> list[str]:
    """Every mismatch between the settings and ``data``'s sizes, one message each."""
    n = len(data.pretrain_indices)
    batch = cfg.optim.batch_size
    problems: list[str | None] = []
    if batch > n:
        problems.append(
            f"optim.batch_size={batch} is more than the {n} pretraining images, so an epoch "
            f"would have no step (a last partial batch is dropped); set optim.batch_size to at "
            f"most {n}"
        )
    problems.append(batch_split_problem(batch, world_size))
    held_out = "hold-out" if data.holdout is not None else "test split"
    if data.labelled and evaluate:
        exclude = data.pretrain_indices if cfg.eval.probe_disjoint else None
        problems.append(
            shots_problem(
                "eval.probe_shots",
                cfg.eval.probe_shots,
                data.train,
                "training split" + (" outside pretraining" if exclude is not None else ""),
                "eval.probe_shots=null to use every image"
                if cfg.eval.probe_shots is not None
                else "eval.probe_disjoint=false to probe on pretraining images too, or a "
                "data.profile that leaves images out of pretraining",
                exclude,
            )
        )
    if data.labelled and cfg.eval.monitor_every > 0:
        off = "eval.monitor_every=0 to turn the kNN monitor off"
        e = cfg.eval
        problems.append(
            shots_problem(
                "eval.monitor_train_per_class",
                e.monitor_train_per_class,
                data.train,
                "training split",
                off,
            )
        )
        problems.append(
            shots_problem(
                "eval.monitor_test_per_class", e.monitor_test_per_class, data.test, held_out, off
            )
        )
    if not data.labelled and evaluate:
        if n < 2:
            problems.append(f"the unlabeled report needs two or more images, there are {n}")
        # k-means needs a sample per cluster; an image's neighbours are the other images.
        limits = {
            "clusters": (cfg.eval.clusters, n),
            "cluster_neighbours": (cfg.eval.cluster_neighbours, n - 1),
        }
        for key, (value, most) in limits.items():
            if not 1 <= value <= most:
                problems.append(
                    f"eval.{key}={value}: the unlabeled report of {n} pretraining images needs "
                    f"1 to {most}"
                )
    problems += resolve_method(cfg.method.name).data_problems(cfg, DataInfo.of(data))
    return [p for p in problems if p is not None]


def check_sizes(cfg: Config, data: RunData, world_size: int = 1, evaluate: bool = True) -> None:
    """Raise one :class:`ConfigError` listing every problem :func:`size_problems` finds."""
    problems = size_problems(cfg, data, world_size, evaluate)
    if problems:
        classes = f", {data.num_classes} classes" if data.labelled else ", unlabeled"
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"the settings do not fit the data ({data.name}: {len(data.pretrain_indices)} "
            f"pretraining images{classes}):\n{listed}"
        )
