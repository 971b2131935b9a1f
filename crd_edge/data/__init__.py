"""Image data: safe image reading, paper transforms, folder datasets and built-in photos.

Importing this package is cheap: scikit-image and scikit-learn load only when the built-in
photos are first used.
"""

from crd_edge.data.builtin import (
    BUILTIN_SOURCES,
    BUILTIN_TEST_SOURCES,
    BuiltinPhoto,
    builtin_photos,
    builtin_split,
    split_names,
)
from crd_edge.data.datasets import (
    LAYOUTS,
    AlignedDataset,
    BuiltinPhotoDataset,
    ImageFolderDataset,
    PhotoDataset,
    UnalignedDataset,
    build_dataset,
)
from crd_edge.data.images import (
    BAD_IMAGE_REASONS,
    IMAGE_EXTENSIONS,
    BadImage,
    ImageFiles,
    SkipCounter,
    list_images,
    read_image,
)
from crd_edge.data.transforms import (
    NO_CROP,
    CropParams,
    apply_crop,
    resize,
    sample_crop,
    to_tensor,
    to_uint8,
)

__all__ = [
    "BAD_IMAGE_REASONS",
    "BUILTIN_SOURCES",
    "BUILTIN_TEST_SOURCES",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "NO_CROP",
    "AlignedDataset",
    "BadImage",
    "BuiltinPhoto",
    "BuiltinPhotoDataset",
    "CropParams",
    "ImageFiles",
    "ImageFolderDataset",
    "PhotoDataset",
    "SkipCounter",
    "UnalignedDataset",
    "apply_crop",
    "build_dataset",
    "builtin_photos",
    "builtin_split",
    "list_images",
    "read_image",
    "resize",
    "sample_crop",
    "split_names",
    "to_tensor",
    "to_uint8",
]
