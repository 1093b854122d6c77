"""What an image folder (or a pair of list files, or an in-memory source such as the glyphs)
holds, before any training: images per class, the imbalance ratio, image sizes and modes,
unreadable files, and a plot of the class distribution (``geoharmony inspect``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoharmony.data.catalog import find_source
from geoharmony.data.preflight import ImageCheck, check_images
from geoharmony.data.sources import load_splits
from geoharmony.data.splits import FileList

__all__ = ["format_report", "inspect_source", "plot_class_counts"]

_SIZES_SHOWN = 5  # most frequent image sizes listed


def _sizes(checks: Sequence[ImageCheck]) -> dict[str, Any]:
    widths = np.asarray([c.width for c in checks])
    heights = np.asarray([c.height for c in checks])
    if not widths.size:
        return {}
    common = Counter(zip(widths.tolist(), heights.tolist(), strict=True)).most_common(_SIZES_SHOWN)
    return {
        "width": {"min": int(widths.min()), "median": float(np.median(widths))},
        "height": {"min": int(heights.min()), "median": float(np.median(heights))},
        "max_side": int(max(widths.max(), heights.max())),
        "most_common": [[w, h, n] for (w, h), n in common],
        "distinct": len(set(zip(widths.tolist(), heights.tolist(), strict=True))),
    }


def _split_report(split: FileList, checks: Sequence[ImageCheck]) -> dict[str, Any]:
    ok = np.asarray([c.ok for c in checks], dtype=bool)
    good = [c for c in checks if c.ok]
    report: dict[str, Any] = {"root": str(split.root), "images": int(ok.sum())}
    if split.num_classes:
        counts = np.bincount(split.labels_of()[ok], minlength=split.num_classes)
        report["class_names"] = list(split.class_names)
        report["class_counts"] = counts.tolist()
        smallest = int(counts.min())
        report["imbalance_ratio"] = float(counts.max()) / smallest if smallest else None
    report["sizes"] = _sizes(good)
    report["modes"] = dict(Counter(c.mode for c in good).most_common())
    return report


def inspect_source(
    source: str,
    root: str | Path | None,
    labels: str = "auto",
    train_list: str | None = None,
    test_list: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Decode every file of the source's splits once (``workers`` processes) and describe them;
    an in-memory source (Fashion-MNIST, glyphs) is described from its arrays.

    Returns:
        ``source``, ``root``, ``labelled``, ``files``, ``bad_files`` (``{"path", "error"}``)
        and per split (``train``, ``test`` where there is one): its root, readable ``images``,
        ``class_names``, ``class_counts`` and ``imbalance_ratio`` (largest / smallest class;
        None with an empty class) when labelled, ``sizes`` and ``modes``.
    """
    # The list files go to the sources whose description takes them (the list source).
    described = find_source(source)
    given = {"train_list": train_list, "test_list": test_list}
    options = {k: v for k, v in given.items() if described is not None and k in described.options}
    train, test = load_splits(source, root, labels, **options)
    splits = {"train": train} if test is None else {"train": train, "test": test}
    files = [s for s in splits.values() if isinstance(s, FileList)]
    if not files:
        # root None: the source's default location (the glyphs' /usr/share/fonts).
        shown = root if root is not None or described is None else described.default_root
        return _memory_report(source, str(shown), splits)
    if len(files) != len(splits):
        raise ValueError(f"inspect reads image files; source {source!r} holds none")
    paths = [s.root / rel for s in files for rel in s.paths]
    checks, _ = check_images(paths, None, workers, progress)
    report: dict[str, Any] = {
        "source": source,
        "root": str(root),
        "labelled": train.num_classes > 0,
        "files": len(paths),
        "bad_files": [
            {"path": str(p), "error": str(c.error)}
            for p, c in zip(paths, checks, strict=True)
            if not c.ok
        ],
    }
    offset = 0
    for name, split in zip(splits, files, strict=True):
        report[name] = _split_report(split, checks[offset : offset + len(split)])
        offset += len(split)
    return report


def _memory_report(source: str, root: str, splits: dict[str, Any]) -> dict[str, Any]:
    """The report of an in-memory source (its images are arrays, decoded when it loaded):
    the same keys, every image readable, one size and mode."""
    report: dict[str, Any] = {
        "source": source,
        "root": root,
        "labelled": splits["train"].num_classes > 0,
        "files": 0,
        "bad_files": [],
        "in_memory": True,
    }
    for name, split in splits.items():
        side = int(split.native_size)
        part: dict[str, Any] = {"root": split.source, "images": len(split)}
        if split.num_classes:
            counts = np.bincount(split.labels_of(), minlength=split.num_classes)
            smallest = int(counts.min())
            part["class_names"] = list(split.class_names)
            part["class_counts"] = counts.tolist()
            part["imbalance_ratio"] = float(counts.max()) / smallest if smallest else None
        part["sizes"] = {
            "width": {"min": side, "median": float(side)},
            "height": {"min": side, "median": float(side)},
            "max_side": side,
            "most_common": [[side, side, len(split)]],
            "distinct": 1,
        }
        part["modes"] = {"L" if split.in_channels == 1 else "RGB": len(split)}
        report[name] = part
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as lines for a terminal."""
    if report.get("in_memory"):
        images = sum(report[name]["images"] for name in ("train", "test") if name in report)
        lines = [f"{report['root']} ({report['source']}): {images} images in memory"]
    else:
        lines = [
            f"{report['root']} ({report['source']}): {report['files']} image files, "
            f"{len(report['bad_files'])} unreadable"
            + ("" if report["labelled"] else "; no labels (no class sub-folders)")
        ]
    for name in ("train", "test"):
        split = report.get(name)
        if split is None:
            if name == "test" and report["labelled"]:
                lines.append("test: no test split (pretraining holds out data.holdout_fraction)")
            continue
        lines.append(f"{name} ({split['root']}): {split['images']} readable images")
        if "class_counts" in split:
            width = max(len(n) for n in split["class_names"])
            pairs = zip(split["class_names"], split["class_counts"], strict=True)
            lines += [f"  {n:<{width}}  {c:>8}" for n, c in sorted(pairs, key=lambda p: -p[1])]
            ratio = split["imbalance_ratio"]
            shown = "undefined (an empty class)" if ratio is None else f"{ratio:.3g}"
            lines.append(f"  imbalance ratio (largest / smallest class): {shown}")
        sizes = split["sizes"]
        if sizes:
            common = ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common"])
            lines.append(
                f"  sizes: {sizes['distinct']} distinct, most common {common}; smallest width "
                f"{sizes['width']['min']}, height {sizes['height']['min']}, largest side "
                f"{sizes['max_side']}"
            )
            modes = ", ".join(f"{m} ({n})" for m, n in split["modes"].items())
            lines.append(f"  modes: {modes}")
    if report["bad_files"]:
        lines.append(f"unreadable files ({len(report['bad_files'])}):")
        lines += [f"  {b['path']}: {b['error']}" for b in report["bad_files"]]
    return "\n".join(lines)


def plot_class_counts(report: dict[str, Any], path: str | Path) -> None:
    """Bar chart of the training split's images per class, largest first, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    split = report["train"]
    order = np.argsort(-np.asarray(split["class_counts"]), kind="stable")
    counts = np.asarray(split["class_counts"])[order]
    names = [split["class_names"][i] for i in order]
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.25 * len(counts), 20.0)), 4.0))
    ax.bar(np.arange(len(counts)), np.maximum(counts, 0.5), color="tab:blue")
    ax.set_yscale("log")
    ax.set_ylim(0.8, max(float(counts.max()), 1.0) * 1.5)  # every bar starts at one image
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_ylabel("images (log scale)")
    ax.set_xlabel("classes, largest first")
    if len(names) <= 40:
        ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=8)
    ratio = split["imbalance_ratio"]
    shown = "" if ratio is None else f", imbalance {ratio:.3g}"
    ax.set_title(f"{report['root']}: {split['images']} images, {len(counts)} classes{shown}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
