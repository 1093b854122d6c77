"""Long-tailed subsets of balanced data sets: per-class counts, splits and balanced subsets.

All randomness comes from numpy ``Generator`` objects built from an explicit seed, so a subset is
a pure function of ``(labels, counts, seed, class_order)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PROFILES",
    "LongTailProfile",
    "balanced_indices",
    "class_counts",
    "exponential_counts",
    "longtail_indices",
    "profile_counts",
    "seeded_class_order",
    "short_classes",
    "stratified_holdout",
]

# Independent random streams for the different draws made from one user seed, so that e.g. the
# class permutation and the image choice of a split do not share random numbers.
_STREAM_CLASS_ORDER = 1
_STREAM_LONGTAIL = 2
_STREAM_BALANCED = 3
_STREAM_HOLDOUT = 4


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def exponential_counts(num_classes: int, n_max: int, imbalance_ratio: float) -> list[int]:
    """Exponential (LDAM-style) long-tail profile.

    ``n_c = int(n_max * rho ** (-c / (C - 1)))`` for ``c = 0..C-1``: class 0 has ``n_max`` images,
    class ``C-1`` has ``int(n_max / rho)``. ``rho = 1`` gives a balanced profile.

    Args:
        num_classes: C >= 1.
        n_max: images in the head class, >= 1.
        imbalance_ratio: rho >= 1 (head count / tail count).

    Returns:
        C per-class counts, non-increasing.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if not imbalance_ratio >= 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if num_classes == 1:
        return [int(n_max)]
    return [int(n_max * imbalance_ratio ** (-c / (num_classes - 1))) for c in range(num_classes)]


@dataclass(frozen=True)
class LongTailProfile:
    """A named protocol for long-tailed splits.

    Attributes:
        n_max_fraction: head-class count as a fraction of the balanced source's per-class count.
        description: where the protocol comes from.
    """

    n_max_fraction: float
    description: str


PROFILES: dict[str, LongTailProfile] = {
    "ldam": LongTailProfile(
        1.0,
        "LDAM (Cao et al. 2019): head class keeps every image of the balanced source "
        "(500 for CIFAR-100, 5000 for CIFAR-10).",
    ),
    "sdclr": LongTailProfile(
        0.9,
        "SDCLR/BCL: head class of 450 images on CIFAR-100 (90% of 500; the rest is held out), "
        "five random splits (seeds). 9,754 images at rho 100.",
    ),
}


def profile_counts(profile: str, num_classes: int, n_max: int, imbalance_ratio: float) -> list[int]:
    """Per-class counts of a named profile (see ``PROFILES``).

    Args:
        profile: a key of ``PROFILES``.
        num_classes: C.
        n_max: per-class image count of the *balanced source* (500 for CIFAR-100); the profile
            scales it (e.g. "sdclr" uses 90% of it).
        imbalance_ratio: rho.
    """
    if profile not in PROFILES:
        raise ValueError(
            f"unknown long-tail profile {profile!r}; expected one of {sorted(PROFILES)}"
        )
    head = round(n_max * PROFILES[profile].n_max_fraction)
    return exponential_counts(num_classes, head, imbalance_ratio)


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    """Number of images of each class.

    Args:
        labels: int array [N] with values in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        C counts.
    """
    labels = _check_labels(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    return np.bincount(labels, minlength=num_classes).tolist()


def seeded_class_order(num_classes: int, seed: int) -> list[int]:
    """A seeded permutation of ``range(num_classes)``: entry ``c`` is the class given rank ``c``
    (rank 0 = head) by ``longtail_indices``."""
    return [int(c) for c in _rng(seed, _STREAM_CLASS_ORDER).permutation(num_classes)]


def longtail_indices(
    labels: np.ndarray,
    counts: Sequence[int],
    seed: int,
    class_order: Sequence[int] | None = None,
) -> np.ndarray:
    """Choose a long-tailed subset of a labelled set.

    Class ``class_order[c]`` receives ``counts[c]`` images, chosen by a seeded shuffle of that
    class's images. Each class's shuffle does not depend on the counts, so for one seed and one
    class order a smaller count selects a subset of the images a larger count selects (e.g. the
    rho = 100 split of a class is nested in its rho = 10 split).

    Args:
        labels: int array [N], values in ``[0, C)`` with ``C = len(counts)``.
        counts: C non-negative per-rank counts.
        seed: seed of the image choice.
        class_order: a permutation of ``range(C)``; None is the identity (class 0 is the head).

    Returns:
        int64 array [sum(counts)] of indices into ``labels``, sorted ascending.
    """
    labels = _check_labels(labels)
    num_classes = len(counts)
    order = list(range(num_classes)) if class_order is None else [int(c) for c in class_order]
    if sorted(order) != list(range(num_classes)):
        raise ValueError(
            f"class_order must be a permutation of range({num_classes}) (one entry per count), "
            f"got {list(class_order or [])}"
        )
    if any(int(n) < 0 for n in counts):
        raise ValueError(f"counts must be non-negative, got {list(counts)}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) to match {num_classes} counts, "
            f"got range [{labels.min()}, {labels.max()}]"
        )
    short = short_classes(labels, counts, order)
    if short:
        detail = ", ".join(f"class {c}: {w} > {a}" for c, w, a in short[:5])
        raise ValueError(f"not enough images for the requested counts ({detail})")
    wanted = _wanted(counts, order)
    rng = _rng(seed, _STREAM_LONGTAIL)
    chosen = []
    # A loop over classes (not samples); classes are visited in id order so that each class's
    # shuffle is the same whatever the class order and counts.
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[: wanted[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _wanted(counts: Sequence[int], class_order: Sequence[int] | None) -> np.ndarray:
    """``[C]`` images asked of each class id: class ``class_order[c]`` gets ``counts[c]``."""
    order = range(len(counts)) if class_order is None else [int(c) for c in class_order]
    wanted = np.zeros(len(counts), dtype=np.int64)
    wanted[list(order)] = np.asarray(counts, dtype=np.int64)
    return wanted


def short_classes(
    labels: np.ndarray, counts: Sequence[int], class_order: Sequence[int] | None = None
) -> list[tuple[int, int, int]]:
    """``(class, wanted, available)`` of every class with fewer images in ``labels`` than the
    per-rank ``counts`` ask of it (class ``class_order[c]`` is asked ``counts[c]``)."""
    wanted = _wanted(counts, class_order)
    available = np.bincount(_check_labels(labels), minlength=len(counts))
    return [(int(c), int(wanted[c]), int(available[c])) for c in np.flatnonzero(available < wanted)]


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split labelled images into a kept part and a class-stratified hold-out.

    Each class with ``n >= 2`` images holds out ``round(fraction * n)`` of them, at least one and
    at most ``n - 1`` (both parts keep the class), chosen by a seeded shuffle; a class of one
    image stays in the kept part.

    Args:
        labels: int array [N] of non-negative class ids.
        fraction: share of each class to hold out, in (0, 1).
        seed: seed of the choice.

    Returns:
        ``(kept, held_out)``: disjoint int64 index arrays into ``labels``, sorted ascending,
        together covering every index.
    """
    labels = _check_labels(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    rng = _rng(seed, _STREAM_HOLDOUT)
    held: list[np.ndarray] = []
    for c in np.unique(labels):  # loop over classes, not samples
        members = rng.permutation(np.flatnonzero(labels == c))
        n = members.size
        take = min(max(round(fraction * n), 1), n - 1)
        held.append(members[:take])
    held_out = np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(labels.shape[0], dtype=np.int64), held_out)
    return kept, held_out


def balanced_indices(
    labels: np.ndarray,
    shots: int | None,
    seed: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """A class-balanced labelled subset, e.g. for a linear probe.

    Args:
        labels: int array [N] of non-negative class ids.
        shots: images per class; None keeps every (non-excluded) image.
        seed: seed of the image choice.
        exclude: optional int array of indices into ``labels`` never to select (for a probe set
            disjoint from the pretraining set).

    Returns:
        int64 array of indices into ``labels``, sorted ascending; ``shots * C`` long when
        ``shots`` is given (C = number of classes present in ``labels``).
    """
    labels = _check_labels(labels)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative, got minimum {labels.min()}")
    allowed = np.ones(labels.shape[0], dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.size and (exclude.min() < 0 or exclude.max() >= labels.shape[0]):
            raise ValueError(f"exclude indices must lie in [0, {labels.shape[0]})")
        allowed[exclude] = False
    if shots is None:
        return np.flatnonzero(allowed).astype(np.int64)
    if shots < 1:
        raise ValueError(f"shots must be >= 1 or None, got {shots}")
    rng = _rng(seed, _STREAM_BALANCED)
    chosen = []
    for c in np.unique(labels):  # loop over classes, not samples
        members = np.flatnonzero((labels == c) & allowed)
        if members.size < shots:
            raise ValueError(
                f"class {c} has {members.size} selectable images, fewer than shots={shots}"
            )
        chosen.append(rng.permutation(members)[:shots])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64, copy=False)
