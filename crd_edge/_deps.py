"""Optional dependencies and files inside installed packages, at the bottom of the package.

A missing optional backend is a one-line error that names the pip extra providing it. Data files
(the teacher's weights, VGG-16, Inception) are found through ``importlib.util.find_spec``
without importing their packages: those packages' ``__init__`` modules pull torchvision,
matplotlib or dependencies we do not install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from crd_edge.errors import UserError


def find_package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside an installed ``package``, or None when either is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def import_cv2(needed_by: str = "the demo"):
    """OpenCV, or a one-line error naming the extra that provides it."""
    try:
        import cv2
    except ImportError:
        raise UserError(f"{needed_by} needs OpenCV: pip install 'crd-edge[demo]' "
                        "(opencv-python-headless; or opencv-python for a desktop window)") from None
    return cv2


def import_onnxruntime(needed_by: str):
    """onnxruntime (either build), or a one-line error naming the extras that provide it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"{needed_by} needs onnxruntime: pip install 'crd-edge[onnxruntime]' "
                        "(or 'crd-edge[onnxruntime-gpu]' for CUDA; not both)") from None
    return onnxruntime
