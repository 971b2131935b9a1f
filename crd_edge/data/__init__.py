"""Image data: safe image reading, paper transforms, folder datasets and built-in photos.

Importing this package is cheap: its names load on first use (PEP 562), so the command line
(``crd_edge.data.cli``) starts without torch, and scikit-image / scikit-learn load only when
the built-in photos are first used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "crd_edge.data.builtin": ["BUILTIN_SOURCES", "BUILTIN_TEST_SOURCES", "BuiltinPhoto", "builtin_photos",
                              "builtin_split", "split_names"],
    "crd_edge.data.datasets": ["LAYOUTS", "AlignedDataset", "BuiltinPhotoDataset", "ImageFolderDataset",
                               "PhotoDataset", "UnalignedDataset", "build_dataset"],
    "crd_edge.data.images": ["BAD_IMAGE_REASONS", "IMAGE_EXTENSIONS", "BadImage", "ImageFiles", "SkipCounter",
                             "list_images", "read_image"],
    "crd_edge.data.transforms": ["NO_CROP", "CropParams", "apply_crop", "resize", "sample_crop"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'crd_edge.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
