"""Large-image sources: OLTR-style list files and image folders, described as :class:`FileList`s
and decoded per item later."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geoharmony.data.splits import DataFormatError, FileList

__all__ = [
    "IMAGE_EXTENSIONS",
    "folder_split",
    "list_images",
    "list_split",
    "load_image_folder",
    "load_list_file",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_list_file(
    root: str | Path,
    list_file: str | Path,
    check_files: bool = True,
    class_names: Sequence[str] | None = None,
) -> FileList:
    """Load an OLTR-style list file (ImageNet-LT, Places-LT): ``relative/path.jpg label`` a line.

    Args:
        root: directory the listed paths are relative to.
        list_file: the list file (absolute, or relative to the working directory).
        check_files: check up front that every listed file exists (else errors surface when an
            image is read).
        class_names: optional names; default ``["0", "1", ...]`` up to the largest label.

    Returns:
        FileList in the order of the file.
    """
    root, list_file = Path(root), Path(list_file)
    if not list_file.is_file():
        raise DataFormatError(
            f"{list_file}: list file not found. The ImageNet-LT and Places-LT splits are not "
            "downloaded for you: the official GH code's split/ folder (github.com/"
            "MediaBrain-SJTU/Geometric-Harmonization) holds ImageNet_LT_train.txt, "
            "ImageNet_LT_test.txt, Places_LT_train.txt and Places_val.txt (OLTR's lists)"
        )
    paths: list[str] = []
    labels: list[int] = []
    with list_file.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)  # from the right: a path may contain spaces
            if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()):
                raise DataFormatError(
                    f"{list_file}:{lineno}: expected 'relative/path label' with a non-negative "
                    f"integer label, got {line.rstrip()!r}"
                )
            paths.append(parts[0].strip())
            labels.append(int(parts[1]))
    if not paths:
        raise DataFormatError(f"{list_file}: no entries")
    n_classes = max(labels) + 1
    if class_names is None:
        names = [str(c) for c in range(n_classes)]
    else:
        names = list(class_names)
        if len(names) < n_classes:
            raise DataFormatError(
                f"{list_file}: label {n_classes - 1} but only {len(names)} class names given"
            )
    if check_files:
        missing = [(i, p) for i, p in enumerate(paths) if not (root / p).is_file()]
        if missing:
            shown = ", ".join(f"{p!r}" for _, p in missing[:3])
            raise DataFormatError(
                f"{list_file}: {len(missing)} listed files not found under {root} (e.g. {shown})"
            )
    return FileList(
        root=root,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        source=f"list:{list_file}:root={root}",
    )


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Every image under ``root`` (recursively, following links, hidden entries skipped), as
    sorted POSIX paths relative to ``root``.

    Raises:
        DataFormatError: ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: image folder not found")
    exts = {e.lower() for e in extensions}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        found += [
            (rel / fn).as_posix()
            for fn in filenames
            if not fn.startswith(".") and os.path.splitext(fn)[1].lower() in exts
        ]
    if not found:
        raise DataFormatError(f"{root}: no images with extensions {sorted(exts)}")
    return sorted(found)


def load_image_folder(
    root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS, labels: str = "auto"
) -> FileList:
    """Load an image folder, labelled by its class sub-folders or unlabeled.

    ``labels="auto"``: ``root/<class_name>/**/<image>``, classes the sorted sub-folder names.
    With fewer than two class sub-folders (images directly in ``root``, or all in one
    sub-folder) the images carry no class information and are returned unlabeled.
    ``labels="folders"``: every sub-folder is a class, however many (a test split).
    ``labels="none"``: every image under ``root``, recursively, unlabeled. Hidden entries are
    ignored; extensions match case-insensitively.

    Returns:
        FileList with paths sorted within each class (unlabeled: sorted).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: image folder not found")
    class_dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if labels == "folders" and not class_dirs:
        raise DataFormatError(f"{root}: no class sub-folders; expected {root}/<class_name>/<image>")
    if labels == "none" or (labels == "auto" and len(class_dirs) < 2):
        everything = list_images(root, extensions)
        unlabeled = np.full(len(everything), -1, dtype=np.int64)
        return FileList(root, everything, unlabeled, [], f"folder:{root}:unlabeled")
    exts = {e.lower() for e in extensions}
    loose = sorted(
        p.name
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )
    if loose:
        raise DataFormatError(
            f"{root}: {len(loose)} images (e.g. {loose[0]!r}) lie directly in the folder beside "
            f"the class sub-folders {class_dirs[:5]}; move them into a class folder, or set "
            "data.labels=none to use every image unlabeled"
        )
    paths: list[str] = []
    label_ids: list[int] = []
    for label, name in enumerate(class_dirs):
        try:
            found = [f"{name}/{path}" for path in list_images(root / name, extensions)]
        except DataFormatError:
            raise DataFormatError(
                f"{root / name}: class folder holds no images with extensions {sorted(exts)}"
            ) from None
        paths += found
        label_ids += [label] * len(found)
    return FileList(
        root=root,
        paths=paths,
        labels=np.asarray(label_ids, dtype=np.int64),
        class_names=class_dirs,
        source=f"folder:{root}",
    )


def list_split(
    root: Path,
    train: bool,
    train_list: str | Path | None = None,
    test_list: str | Path | None = None,
    check_files: bool = True,
) -> FileList:
    """The ``list`` source's loader: the split's list file (``data.train_list`` /
    ``data.test_list``) read with :func:`load_list_file`."""
    list_file = train_list if train else test_list
    if list_file is None:
        raise ValueError(
            f"source 'list' needs {'train_list' if train else 'test_list'}=<path to list file>"
        )
    return load_list_file(root, list_file, check_files=check_files)


def folder_split(root: Path, train: bool, labels: str = "auto") -> FileList | None:
    """The ``folder`` source's loader: ``root/train`` and ``root/test`` (or ``root/val``) when
    present, else ``root`` as the training split and no test split (None)."""
    # A test split is labelled by its sub-folders, even by one (a test set of a single class);
    # unlabeled images have no test split.
    for split in ("train",) if train else ("test", "val"):
        if (root / split).is_dir():
            return load_image_folder(root / split, labels=labels if train else "folders")
    return load_image_folder(root, labels=labels) if train else None
