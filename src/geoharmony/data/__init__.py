"""Data: long-tail profiles, image sources (one description each, in the catalog) behind one
split interface, indexed datasets, two-view augmentation and the training streams,
normalisation statistics."""

from geoharmony.data.augment import (
    BatchedSimCLRAugment,
    TwoViewTransform,
    eval_transform,
    imagenet_two_view_transform,
)
from geoharmony.data.catalog import SOURCES, Source
from geoharmony.data.datasets import IndexedFileDataset, IndexedImageArray
from geoharmony.data.longtail import (
    PROFILES,
    balanced_indices,
    class_counts,
    exponential_counts,
    longtail_indices,
    profile_counts,
    seeded_class_order,
)
from geoharmony.data.normalization import NORM_STATS, norm_stats, normalize_only
from geoharmony.data.sources import (
    image_size,
    load_cifar,
    load_fashion_mnist,
    load_image_folder,
    load_list_file,
    load_source,
)
from geoharmony.data.splits import DataFormatError, FileList, ImageArray, ImageSplit

__all__ = [
    "NORM_STATS",
    "PROFILES",
    "SOURCES",
    "BatchedSimCLRAugment",
    "DataFormatError",
    "FileList",
    "ImageArray",
    "ImageSplit",
    "IndexedFileDataset",
    "IndexedImageArray",
    "Source",
    "TwoViewTransform",
    "balanced_indices",
    "class_counts",
    "eval_transform",
    "exponential_counts",
    "image_size",
    "imagenet_two_view_transform",
    "load_cifar",
    "load_fashion_mnist",
    "load_image_folder",
    "load_list_file",
    "load_source",
    "longtail_indices",
    "norm_stats",
    "normalize_only",
    "profile_counts",
    "seeded_class_order",
]
