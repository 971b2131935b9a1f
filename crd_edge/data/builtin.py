"""Built-in colour photos, available with no network: a default data set for demos and tests.

Sources (each verified to load offline from files shipped inside the wheels):

* scikit-image ``skimage.data``: astronaut, chelsea (cat), coffee, rocket, hubble_deep_field,
  retina, immunohistochemistry, colorwheel, and stereo_motorcycle (left and right views are
  two items of one source). Other ``skimage.data`` colour images (skin, lily, kidney, ...) are
  fetched through pooch and fail offline; ``cat`` duplicates chelsea; ``logo`` is a graphic.
* scikit-learn ``load_sample_images()``: china, flower (640x427).
* Debian's ``opencv-doc`` package, when installed (``apt-get install opencv-doc``; not a Python
  dependency): the colour photos of its ``examples/data`` folder (fruits, baboon, building,
  butterfly, starry_night, ...), chosen automatically (colour, short side >= 256 px). They
  join the TRAIN split only, so the held-out numbers stay comparable with or without them;
  with 9 training images (4 of them scientific images) a student generalises poorly.

Split, fixed and by SOURCE so both stereo views stay together:
test = ``BUILTIN_TEST_SOURCES`` (coffee, rocket, flower: an indoor still life, an outdoor
scene, a nature close-up); train = every other source (8 sources, 9 images). The odd ones
(retina, hubble, IHC, colour wheel) stay in train, where they add variety, rather than
making the held-out numbers unrepresentative of photos.

A source whose loader fails (package missing, data file absent) is skipped with a warning.
"""

from __future__ import annotations

import functools
import re
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError

__all__ = [
    "BUILTIN_SOURCES",
    "BUILTIN_TEST_SOURCES",
    "BuiltinPhoto",
    "builtin_photos",
    "builtin_split",
    "split_names",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class BuiltinPhoto:
    """One built-in photo: ``name`` (unique), ``source`` (shared by views of one scene), RGB."""

    name: str
    source: str
    image: np.ndarray  # uint8 HxWx3, read-only (shared by the in-process cache)


def _skimage(fn_name: str) -> Callable[[], list[tuple[str, np.ndarray]]]:
    def load() -> list[tuple[str, np.ndarray]]:
        import skimage.data  # lazy: importing crd_edge.data must stay cheap

        return [(fn_name, getattr(skimage.data, fn_name)())]

    return load


def _stereo_motorcycle() -> list[tuple[str, np.ndarray]]:
    import skimage.data

    left, right, _disparity = skimage.data.stereo_motorcycle()
    return [("motorcycle_left", left), ("motorcycle_right", right)]


def _sklearn(file_name: str) -> Callable[[], list[tuple[str, np.ndarray]]]:
    def load() -> list[tuple[str, np.ndarray]]:
        from sklearn.datasets import load_sample_image

        return [(file_name.rsplit(".", 1)[0], load_sample_image(file_name))]

    return load


OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


# Synthetic drawings among the coloured files: logos, text, blobs, contour test shapes.
_NOT_PHOTOS = re.compile(r"(.*logo.*|imageText.*|detect_blob|ml|pic\d+|pca_test\d*)$")


def _opencv_doc_photos(folder: Path = OPENCV_DOC_DATA) -> list[tuple[str, np.ndarray]]:
    """Colour photos (short side >= 256, visibly coloured) of the opencv-doc examples."""
    from crd_edge.data.images import BadImage, list_images, read_image

    photos = []
    for path in list_images(folder) if folder.is_dir() else []:
        try:
            img = read_image(path, min_size=256)
        except BadImage:
            continue
        small = img[::8, ::8].astype(np.int16)
        colourfulness = np.abs(small[..., 0] - small[..., 1]).mean() + np.abs(small[..., 1] - small[..., 2]).mean()
        if colourfulness >= 12 and not _NOT_PHOTOS.match(path.stem):  # grayscale scans fall below
            photos.append((f"opencv_{path.stem}", img))
    return photos


# source name -> loader returning [(item name, image)]. Order is the dataset order.
_LOADERS: dict[str, Callable[[], list[tuple[str, np.ndarray]]]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "colorwheel": _skimage("colorwheel"),
    "stereo_motorcycle": _stereo_motorcycle,
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "opencv_doc": _opencv_doc_photos,
}

#: Every built-in source, in dataset order.
BUILTIN_SOURCES: tuple[str, ...] = tuple(_LOADERS)
#: The held-out sources (the "test" split); all other sources are "train".
BUILTIN_TEST_SOURCES: tuple[str, ...] = ("coffee", "rocket", "flower")
SPLITS: tuple[str, ...] = ("train", "test")


def _as_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Normalise a bundled array to read-only uint8 HxWx3 (drop alpha, expand gray)."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected HxWx3, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr[..., :3])
    arr.setflags(write=False)  # shared through the cache: nobody may modify it in place
    return arr


@functools.lru_cache(maxsize=1)
def _load_all() -> tuple[BuiltinPhoto, ...]:
    photos = []
    for source, loader in _LOADERS.items():
        try:
            items = [(name, _as_rgb_uint8(img)) for name, img in loader()]
        except Exception as e:  # noqa: BLE001 - any failure of an optional source is a skip
            log.warning("built-in photo %r unavailable, skipped: %s", source, e)
            continue
        photos.extend(BuiltinPhoto(name, source, img) for name, img in items)
        if not items and source == "opencv_doc":
            log.info("opencv-doc photos not installed: built-in training set without them")
    return tuple(photos)


def builtin_photos() -> list[BuiltinPhoto]:
    """All built-in photos that load here, in a fixed order (loaded once per process)."""
    return list(_load_all())


def builtin_split(split: str) -> list[BuiltinPhoto]:
    """The photos of one split, ``"train"`` or ``"test"`` (split by source, see module doc)."""
    if split not in SPLITS:
        raise UserError(f"unknown built-in split {split!r}: use 'train' or 'test'")
    want_test = split == "test"
    return [p for p in _load_all() if (p.source in BUILTIN_TEST_SOURCES) == want_test]


def split_names() -> dict[str, list[str]]:
    """``{"train": [photo names], "test": [photo names]}`` for reports (loaded photos only)."""
    return {split: [p.name for p in builtin_split(split)] for split in SPLITS}
