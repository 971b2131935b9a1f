"""Built-in colour photos, available with no network: a default data set for demos and tests.

Sources (each verified to load offline from files shipped inside the wheels):

* scikit-image ``skimage.data``: astronaut, chelsea (cat), coffee, rocket, hubble_deep_field,
  retina, immunohistochemistry, colorwheel, and stereo_motorcycle (left and right views are
  two items of one source). Other ``skimage.data`` colour images (skin, lily, kidney, ...) are
  fetched through pooch and fail offline; ``cat`` duplicates chelsea; ``logo`` is a graphic.
* scikit-learn ``load_sample_images()``: china, flower (640x427).
* Debian's ``gcompris-qt-data`` package, when installed (``scripts/install.sh --with-photos``):
  about 200 real photographs (monuments, animals, fish, dams, the sea) with a licence each, see
  :mod:`crd_edge.data.gcompris`. Each activity is one source; within it, every sixth photo in
  path order (index 3, 9, 15, ...) is held out, so the test split spans every activity.
* Debian's ``opencv-doc`` package, when installed (``apt-get install opencv-doc``; not a Python
  dependency): the colour photos of its ``examples/data`` folder (fruits, baboon, building,
  butterfly, starry_night, ...), chosen automatically (colour, short side >= 256 px). They
  join the TRAIN split only, so the held-out numbers stay comparable with or without them;
  with 9 training images (4 of them scientific images) a student generalises poorly.

Split, fixed and by SOURCE so both stereo views stay together:
test = ``BUILTIN_TEST_SOURCES`` (coffee, rocket, flower: an indoor still life, an outdoor
scene, a nature close-up) plus the GCompris photos held out by the rule above; train = every
other photo (without the optional packages: 8 sources, 9 images). The odd ones
(retina, hubble, IHC, colour wheel) stay in train, where they add variety, rather than
making the held-out numbers unrepresentative of photos.

A source whose loader fails (package missing, data file absent) is skipped with a warning.
"""

from __future__ import annotations

import functools
import os
import re
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError

__all__ = [
    "BUILTIN_SOURCES",
    "BUILTIN_TEST_SOURCES",
    "BuiltinPhoto",
    "builtin_photos",
    "builtin_split",
    "photo_manifest",
    "split_names",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class BuiltinPhoto:
    """One built-in photo: ``name`` (unique), ``source`` (shared by views of one scene), RGB."""

    name: str
    source: str
    image: np.ndarray  # uint8 HxWx3, read-only (shared by the in-process cache)
    licence: dict = field(default_factory=dict)  # package, file, copyright, licence, source
    held_out: bool = False  # a held-out photo inside a training source (GCompris rule)


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


def _gcompris_photos() -> list[tuple[str, np.ndarray, dict, bool]]:
    from crd_edge.data.gcompris import gcompris_photos

    by_activity: dict[str, int] = {}
    items = []
    for photo in gcompris_photos():
        index = by_activity.get(photo.activity, 0)
        by_activity[photo.activity] = index + 1
        items.append((photo.name, photo.image, photo.licence, index % GCOMPRIS_HOLDOUT_EVERY == 3))
    return items


#: Every GCOMPRIS_HOLDOUT_EVERY-th GCompris photo of an activity (from the 4th) is held out.
GCOMPRIS_HOLDOUT_EVERY = 6

# Licences of the bundled sources (the GCompris loader gives one per photo).
_PACKAGE_LICENCES = {
    "skimage": {"package": "scikit-image (PyPI)", "licence": "see skimage.data (public domain / CC0 / "
                "NASA / photographer grants listed in its docs)"},
    "sklearn": {"package": "scikit-learn (PyPI)", "licence": "CC-BY 2.0 (Flickr; see sklearn.datasets.load_sample_images)"},
    "opencv_doc": {"package": "opencv-doc (Debian)", "licence": "see /usr/share/doc/opencv-doc/copyright"},
}

# source name -> loader returning [(item name, image)] or, for GCompris, [(name, image, licence,
# held_out)]. Order is the dataset order.
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
    "gcompris": _gcompris_photos,
}

_SKIMAGE_SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                    "immunohistochemistry", "colorwheel", "stereo_motorcycle")

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


#: Set to "bundled" to use only the photos inside Python packages (not the optional Debian
#: packages): results then do not depend on what else the machine has (the test suite does).
PHOTOS_ENV = "CRD_EDGE_BUILTIN_PHOTOS"
_DEBIAN_SOURCES = ("opencv_doc", "gcompris")


@functools.lru_cache(maxsize=1)
def _load_all() -> tuple[BuiltinPhoto, ...]:
    photos = []
    bundled_only = os.environ.get(PHOTOS_ENV, "all") == "bundled"
    for source, loader in _LOADERS.items():
        if bundled_only and source in _DEBIAN_SOURCES:
            continue
        try:
            items = [(item[0], _as_rgb_uint8(item[1]), *item[2:]) for item in loader()]
        except Exception as e:  # noqa: BLE001 - any failure of an optional source is a skip
            log.warning("built-in photo %r unavailable, skipped: %s", source, e)
            continue
        for name, img, *extra in items:
            if extra:  # GCompris: one licence per photo, and the per-photo held-out rule
                licence, held_out = extra
                photos.append(BuiltinPhoto(name, source,
                                           img, licence, held_out))
            else:
                package = ("skimage" if source in _SKIMAGE_SOURCES else
                           "opencv_doc" if source == "opencv_doc" else "sklearn")
                photos.append(BuiltinPhoto(name, source, img, {**_PACKAGE_LICENCES[package], "file": name}))
        if not items and source in ("opencv_doc", "gcompris"):
            log.info("%s photos not installed: built-in training set without them", source)
    return tuple(photos)


def builtin_photos() -> list[BuiltinPhoto]:
    """All built-in photos that load here, in a fixed order (loaded once per process)."""
    return list(_load_all())


def builtin_split(split: str) -> list[BuiltinPhoto]:
    """The photos of one split, ``"train"`` or ``"test"`` (split by source, see module doc)."""
    if split not in SPLITS:
        raise UserError(f"unknown built-in split {split!r}: use 'train' or 'test'")
    want_test = split == "test"
    return [p for p in _load_all() if (p.source in BUILTIN_TEST_SOURCES or p.held_out) == want_test]


def photo_manifest() -> list[dict]:
    """Every built-in photo that loads here: name, split, source package, file and licence
    (written beside each run so a report can cite what it trained and was scored on)."""
    return [{"name": p.name, "split": "test" if p.source in BUILTIN_TEST_SOURCES or p.held_out else "train",
             "height": int(p.image.shape[0]), "width": int(p.image.shape[1]), **p.licence}
            for p in _load_all()]


def split_names() -> dict[str, list[str]]:
    """``{"train": [photo names], "test": [photo names]}`` for reports (loaded photos only)."""
    return {split: [p.name for p in builtin_split(split)] for split in SPLITS}
