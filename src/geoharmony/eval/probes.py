"""The probes: ways of reading a representation's class structure, one description each.

A probe fits on the features of a labelled probe set and predicts the test split; its result is
a block of group accuracies (``many`` ... ``worst``, ``per_class``) under
``metrics.json["probes"][name]``. Every consumer (the deficit, ``compare``'s tables and reading,
the quality study) iterates over :data:`PROBES`, so a new probe is one :class:`Probe` here
(docs/design.md, "Adding a probe").

``metrics.json`` files written before 2026-12-07 kept the linear probe's block at the top level
and kNN's under ``knn``; :func:`upgrade_metrics` reads them into today's layout, and every
reader of a result goes through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from geoharmony.config import EvalConfig
from geoharmony.eval.knn import knn_predict
from geoharmony.eval.linear_probe import predict, train_linear_probe
from geoharmony.eval.metrics import format_group_value

__all__ = [
    "BLOCK_KEYS",
    "PRETRAINING_PROBES",
    "PROBES",
    "Probe",
    "nest_probe",
    "probe_block",
    "probe_label",
    "probe_lines",
    "probe_title",
    "upgrade_metrics",
]

# A probe's block: group accuracies and per-class accuracies (percent).
BLOCK_KEYS: tuple[str, ...] = ("many", "medium", "few", "std", "avg", "worst", "per_class")

# fit_predict(train_x [N, D], train_y [N], test_x [M, D], num_classes, eval settings, seed)
# -> predicted classes [M]
FitPredict = Callable[[Tensor, Tensor, Tensor, int, EvalConfig, int], Tensor]


@dataclass(frozen=True)
class Probe:
    """One probe.

    ``name``: its key under ``metrics.json["probes"]``; ``title``: a table's heading;
    ``label``: its name in a sentence. ``fit_predict``: how pretraining's evaluation measures it
    on the probe set's features; None for a probe that a command of its own measures (the
    fine-tuned classifier of ``geoharmony finetune``), listed here for its title.
    """

    name: str
    title: str
    label: str
    fit_predict: FitPredict | None = None


def _knn(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, classes: int, ev: EvalConfig, seed: int
) -> Tensor:
    k = min(ev.knn_k, len(train_y))
    return knn_predict(train_x, train_y, test_x, classes, k=k, temperature=ev.knn_temperature)


def _linear(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, classes: int, ev: EvalConfig, seed: int
) -> Tensor:
    head = train_linear_probe(
        train_x, train_y, classes, preset=ev.probe, epochs=ev.probe_epochs, seed=seed
    )
    return predict(head, test_x)


# kNN first: on Fashion-MNIST-LT a full linear probe with 1,000 labels a class hides much of
# the tail deficit that kNN shows (docs/design.md section 6), so kNN carries the headline there.
PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("knn", "kNN", "kNN", _knn),
        Probe("linear", "Linear probe", "linear", _linear),
        Probe("finetune", "Fine-tuned classifier", "fine-tuned"),
    )
}

# What every pretraining run's metrics.json holds: the probes its evaluation measures.
PRETRAINING_PROBES: tuple[str, ...] = tuple(n for n, p in PROBES.items() if p.fit_predict)


def probe_title(name: str) -> str:
    """A probe's table heading (the name itself for a probe this version does not know)."""
    probe = PROBES.get(name)
    return probe.title if probe else name


def probe_label(name: str) -> str:
    """A probe's name in a sentence (the name itself for a probe this version does not know)."""
    probe = PROBES.get(name)
    return probe.label if probe else name


def probe_block(result: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """``result``'s block of probe ``name`` (upgraded first), or None when it has none."""
    block = upgrade_metrics(result).get("probes", {}).get(name)
    return block if isinstance(block, Mapping) else None


def probe_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per probe of ``result``: ``kNN (thirds): many 81.2  medium ...  avg 75.6``."""
    result = upgrade_metrics(result)
    keys = ("many", "medium", "few", "std", "avg")
    lines = []
    for name, block in result.get("probes", {}).items():
        values = "  ".join(f"{k} {format_group_value(block.get(k))}" for k in keys)
        lines.append(f"{probe_title(name)} ({result.get('group_rule')}): {values}")
    return lines


def nest_probe(name: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """A one-probe result (:func:`geoharmony.eval.result_from_predictions`'s flat dict) in
    ``metrics.json``'s layout: its block under ``probes[name]``, the rest (``class_counts``,
    ``group_rule``) left at the top."""
    rest = {k: v for k, v in flat.items() if k not in BLOCK_KEYS}
    return {"probes": {name: {k: flat[k] for k in BLOCK_KEYS}}, **rest}


def upgrade_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """A ``metrics.json`` dict in today's layout (a copy; ``result`` is left as it is).

    Before 2026-12-07 the linear probe's block was the file's top level (``task: probe`` of
    ``geoharmony transfer`` too; the fine-tuned classifier's for ``task: finetune``), kNN's
    was ``knn`` and the probe set's protocol ``probe``. Now every probe's block sits under
    ``probes`` and the protocol under ``probe_set``; ``class_counts`` and ``group_rule`` stay
    at the top, as they belong to the run. A result without accuracies (unlabeled data) or
    already in today's layout comes back unchanged.
    """
    out = dict(result)
    if "probes" in out or "per_class" not in out:
        return out
    top = "finetune" if out.get("task") == "finetune" else "linear"
    probes = {top: {k: out.pop(k) for k in BLOCK_KEYS if k in out}}
    if isinstance(out.get("knn"), Mapping):
        probes = {"knn": dict(out.pop("knn")), **probes}
    out["probes"] = probes
    if "probe" in out:
        out["probe_set"] = out.pop("probe")
    return out
