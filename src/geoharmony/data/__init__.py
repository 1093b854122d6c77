"""Data: long-tail profiles and splits, image sources, indexed datasets, two-view augmentation."""

from geoharmony.data.augment import (
    NORM_STATS,
    BatchedSimCLRAugment,
    TwoViewTransform,
    eval_transform,
    imagenet_two_view_transform,
    normalize_only,
    reference_torchvision_two_view,
)
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
from geoharmony.data.sources import (
    DataFormatError,
    FileList,
    ImageArray,
    load_cifar,
    load_fashion_mnist,
    load_image_folder,
    load_list_file,
    load_source,
)

__all__ = [
    "NORM_STATS",
    "PROFILES",
    "BatchedSimCLRAugment",
    "DataFormatError",
    "FileList",
    "ImageArray",
    "IndexedFileDataset",
    "IndexedImageArray",
    "TwoViewTransform",
    "balanced_indices",
    "class_counts",
    "eval_transform",
    "exponential_counts",
    "imagenet_two_view_transform",
    "load_cifar",
    "load_fashion_mnist",
    "load_image_folder",
    "load_list_file",
    "load_source",
    "longtail_indices",
    "normalize_only",
    "profile_counts",
    "reference_torchvision_two_view",
    "seeded_class_order",
]
