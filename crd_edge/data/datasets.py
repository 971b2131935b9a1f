"""Torch datasets over image folders (plain, CycleGAN unaligned, pix2pix aligned) and built-ins.

Every sample is a dict that ``default_collate`` batches: ``"A"`` (float32 3 x size x size in
[-1, 1]), ``"index"`` (source image index, valid for ``load_full``), ``"top"``, ``"left"``,
``"flip"`` (the crop applied to ``load_full(index)``), and ``"B"`` where there is a target.

Randomness comes only from a ``random.Random`` seeded with (seed, epoch, index), so a resumed
run or another worker draws the same crops; call ``set_epoch`` at each epoch.

Files are decoded once at build time; bad ones are dropped and counted in ``dataset.skipped``.
A file that breaks later is counted and replaced by the next good item, so iteration never
raises mid-epoch (DataLoader workers count such late failures in their own copy).
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from crd_edge.data.builtin import builtin_split
from crd_edge.data.images import BadImage, ImageFiles, SkipCounter, list_images, read_image
from crd_edge.data.transforms import NO_CROP, CropParams, apply_crop, resize, sample_crop
from crd_edge.imaging import tensor_from_uint8
from crd_edge.errors import UserError

__all__ = ["LAYOUTS", "AlignedDataset", "BuiltinPhotoDataset", "ImageFolderDataset",
           "PhotoDataset", "UnalignedDataset", "build_dataset"]

EXPECTED_LAYOUTS = (
    "expected trainA/ and trainB/ (CycleGAN unaligned) or train/ with A|B images "
    "(pix2pix aligned) or a folder of images"
)


class PhotoDataset(Dataset):
    """Base of all datasets here: sizes, seeding, crops; file-backed subclasses set ``files``.

    What a dataset is, for the training loop: ``paired`` (A and B are aligned pairs: the
    discriminator is conditional), ``has_test_split`` (a "test" phase holds photos that never
    train; a plain folder has none) and ``describe()``."""

    files: ImageFiles[Any]
    paired: bool = False
    has_test_split: bool = True

    def describe(self) -> str:
        return f"{type(self).__name__} at {getattr(self, 'root', '?')}"

    def __init__(self, size: int, load_size: int, train: bool, seed: int, min_size: int) -> None:
        if size < 1:
            raise UserError(f"image size must be positive, got {size}")
        if train and load_size < size:
            raise UserError(f"load_size ({load_size}) must be at least size ({size}): raise it")
        self.size, self.load_size, self.train = size, load_size, train
        self.seed, self.epoch, self.min_size = seed, 0, min_size
        self.skipped = SkipCounter()

    @property
    def full_size(self) -> int:
        """Side of ``load_full``'s output: ``load_size`` in training, ``size`` in test mode."""
        return self.load_size if self.train else self.size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops ``__getitem__`` draws (call once per epoch)."""
        self.epoch = int(epoch)

    def item_rng(self, index: int) -> random.Random:
        """The RNG of one item: depends only on (seed, epoch, index), never on global state."""
        # A str seed is hashed with SHA-512 by random.Random, stable across processes and runs.
        return random.Random(f"crd_edge/{self.seed}/{self.epoch}/{index}")

    def _crop(self, rng: random.Random) -> CropParams:
        return sample_crop(self.load_size, self.size, rng) if self.train else NO_CROP

    def _full(self, img: np.ndarray) -> torch.Tensor:
        return tensor_from_uint8(resize(img, self.full_size))

    def _check_index(self, index: int) -> int:
        # Plain `for x in dataset` stops on IndexError, so out-of-range must raise.
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return index

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        """File name of source image ``index`` (for reports and sample grids)."""
        return self.files.paths[index].name

    def _sample(self, index: int, a: np.ndarray, params: CropParams) -> dict[str, Any]:
        return {
            "A": apply_crop(self._full(a), params, self.size),
            "index": index, "top": params.top, "left": params.left, "flip": params.flip,
        }


class ImageFolderDataset(PhotoDataset):
    """A plain folder of source images (offline distillation needs no targets)."""

    has_test_split = False

    def __init__(self, root: str | Path, size: int = 256, load_size: int = 286,
                 train: bool = True, seed: int = 0, min_size: int = 32) -> None:
        super().__init__(size, load_size, train, seed, min_size)
        self.root = Path(root)
        self.files = ImageFiles(self.root, partial(read_image, min_size=min_size), self.skipped,
                                EXPECTED_LAYOUTS)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        params = self._crop(self.item_rng(index))
        j, img = self.files.first_good(index)
        return self._sample(j, img, params)

    def load_full(self, index: int) -> torch.Tensor:
        """The resized image before crop/flip, 3 x full_size x full_size; may raise BadImage."""
        return self._full(self.files.read(index))


class UnalignedDataset(PhotoDataset):
    """CycleGAN layout ``root/{phase}A`` (+ optional ``root/{phase}B``); one item per A image.

    ``"B"`` is a seeded random B image with its own crop (``"B_index"``, ``"B_top"``,
    ``"B_left"``, ``"B_flip"``); it is absent when ``{phase}B/`` does not exist.
    """

    def __init__(self, root: str | Path, phase: str = "train", size: int = 256,
                 load_size: int = 286, train: bool | None = None, seed: int = 0,
                 min_size: int = 32) -> None:
        super().__init__(size, load_size, phase == "train" if train is None else train, seed,
                         min_size)
        self.root, self.phase = Path(root), phase
        if not (self.root / f"{phase}A").is_dir():
            raise UserError(f"no {phase}A/ folder in {self.root}: {EXPECTED_LAYOUTS}")
        reader = partial(read_image, min_size=min_size)  # picklable, unlike a lambda
        self.files = ImageFiles(self.root / f"{phase}A", reader, self.skipped, EXPECTED_LAYOUTS)
        b_dir = self.root / f"{phase}B"
        self.files_b = (ImageFiles(b_dir, reader, self.skipped, EXPECTED_LAYOUTS)
                        if b_dir.is_dir() else None)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        rng = self.item_rng(index)
        params = self._crop(rng)  # draw order: A crop, B index, B crop
        sample = self._sample(*self.files.first_good(index), params)
        if self.files_b is not None:
            b_start, b_params = rng.randrange(len(self.files_b)), self._crop(rng)
            b, b_img = self.files_b.first_good(b_start)
            sample.update({"B": apply_crop(self._full(b_img), b_params, self.size),
                           "B_index": b, "B_top": b_params.top, "B_left": b_params.left,
                           "B_flip": b_params.flip})
        return sample

    def load_full(self, index: int, domain: str = "A") -> torch.Tensor:
        """Resized A (or B) image ``index`` before crop/flip; may raise BadImage."""
        files = self.files if domain == "A" else self.files_b
        if files is None or domain not in ("A", "B"):
            raise ValueError(f"no domain {domain!r} in {self.root}")
        return self._full(files.read(index))


class AlignedDataset(PhotoDataset):
    """pix2pix layout ``root/{phase}/*``: each file is A|B side by side; A and B share the crop.

    ``direction="BtoA"`` swaps the halves (e.g. edges2shoes stored photo|edges).
    """

    paired = True

    def __init__(self, root: str | Path, phase: str = "train", size: int = 256,
                 load_size: int = 286, train: bool | None = None, seed: int = 0,
                 min_size: int = 32, direction: str = "AtoB") -> None:
        super().__init__(size, load_size, phase == "train" if train is None else train, seed,
                         min_size)
        if direction not in ("AtoB", "BtoA"):
            raise UserError(f"unknown direction {direction!r}: use 'AtoB' or 'BtoA'")
        self.root, self.phase, self.direction = Path(root), phase, direction
        if not (self.root / phase).is_dir():
            raise UserError(f"no {phase}/ folder in {self.root}: {EXPECTED_LAYOUTS}")
        self.files = ImageFiles(self.root / phase, self._read_pair, self.skipped,
                                EXPECTED_LAYOUTS)

    def _read_pair(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        ab = read_image(path, min_size=0)
        h, w = ab.shape[:2]
        half = w // 2  # pix2pix: A = [0, w/2), B = [w/2, w)
        if min(h, half) < self.min_size:
            raise BadImage("too_small", path, f"{w}x{h} A|B pair, halves below {self.min_size} px")
        a, b = ab[:, :half], ab[:, half : 2 * half]
        return (b, a) if self.direction == "BtoA" else (a, b)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        params = self._crop(self.item_rng(index))
        j, (a, b) = self.files.first_good(index)
        sample = self._sample(j, a, params)
        sample["B"] = apply_crop(self._full(b), params, self.size)
        return sample

    def load_full(self, index: int, domain: str = "A") -> torch.Tensor:
        """Resized A (or B) half of pair ``index`` before crop/flip; may raise BadImage."""
        if domain not in ("A", "B"):
            raise ValueError(f"no domain {domain!r}: use 'A' or 'B'")
        a, b = self.files.read(index)
        return self._full(a if domain == "A" else b)


class BuiltinPhotoDataset(PhotoDataset):
    """The built-in photos (``crd_edge.data.builtin``), split by source into train/test."""

    def describe(self) -> str:
        from crd_edge.data.builtin import split_names
        return f"built-in photos (held out: {', '.join(split_names()['test'])})"

    def __init__(self, split: str = "train", size: int = 256, load_size: int = 286,
                 train: bool | None = None, seed: int = 0, min_size: int = 32) -> None:
        super().__init__(size, load_size, split == "train" if train is None else train, seed,
                         min_size)
        self.split = split
        self.photos = builtin_split(split)
        if not self.photos:
            raise UserError("built-in photos unavailable (scikit-image and scikit-learn "
                            "load none): install them or pass a data folder")

    def __len__(self) -> int:
        return len(self.photos)

    def name(self, index: int) -> str:
        """Name of built-in photo ``index`` (e.g. ``astronaut``)."""
        return self.photos[index].name

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        params = self._crop(self.item_rng(index))
        return self._sample(index, self.photos[index].image, params)

    def load_full(self, index: int) -> torch.Tensor:
        """The resized photo before crop/flip, 3 x full_size x full_size."""
        return self._full(self.photos[index].image)


LAYOUTS: tuple[str, ...] = ("auto", "builtin", "folder", "unaligned", "aligned")
_ALIGNED_SPLITS = {"train", "val", "test"}


def _looks_aligned(folder: Path) -> bool:
    """True if the first few images in ``folder`` are about twice as wide as high (A|B)."""
    from PIL import Image  # header only: Image.open does not decode the pixels

    sizes = []
    for path in list_images(folder)[:5]:
        try:
            with Image.open(path) as im:
                sizes.append(im.size)
        except (OSError, ValueError):
            continue  # a bad file is the dataset's business (skipped and counted there)
    return bool(sizes) and all(1.8 <= w / h <= 2.2 for w, h in sizes)


def detect_layout(root: Path, phase: str) -> str:
    """Guess the layout of an existing folder, or raise ``UserError`` naming what was found."""
    if (root / f"{phase}A").is_dir() or (root / "trainA").is_dir():
        return "unaligned"
    if list_images(root):
        return "folder"
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and set(subdirs) <= _ALIGNED_SPLITS:
        split_dir = root / phase if (root / phase).is_dir() else root / subdirs[0]
        if _looks_aligned(split_dir):
            return "aligned"
        raise UserError(
            f"{split_dir} does not hold A|B pairs twice as wide as high: {EXPECTED_LAYOUTS} "
            f"(set layout 'aligned' to force pix2pix, or point at {split_dir} with layout 'folder')"
        )
    if not subdirs:
        raise UserError(f"no images in {root}: {EXPECTED_LAYOUTS}")
    found = ", ".join(f"{d}/" for d in subdirs)
    raise UserError(f"cannot tell the layout of {root} (found {found}): {EXPECTED_LAYOUTS}")


def build_dataset(data: str | Path | None, layout: str = "auto", phase: str = "train",
                  size: int = 256, load_size: int = 286, seed: int = 0) -> PhotoDataset:
    """Build the dataset for ``data``: ``None``/``"builtin"`` -> built-in photos, else a folder.

    ``layout="auto"`` detects: ``trainA/`` -> ``UnalignedDataset``; only ``train/ val/ test/``
    subfolders with images twice as wide as high -> ``AlignedDataset``; images directly in the
    folder -> ``ImageFolderDataset``. Training transforms (crop/flip) apply when
    ``phase == "train"``; any other phase resizes to ``size``. For built-ins, ``phase="train"``
    selects the train split and any other phase the test split.
    """
    if layout not in LAYOUTS:
        raise UserError(f"unknown data layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    train = phase == "train"
    common = {"size": size, "load_size": load_size, "seed": seed}
    if data is None or str(data) == "builtin" or layout == "builtin":
        return BuiltinPhotoDataset("train" if train else "test", train=train, **common)
    root = Path(data).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"data folder {root} {what}: {EXPECTED_LAYOUTS}, or omit it for the "
                        "built-in photos")
    if layout == "auto":
        layout = detect_layout(root, phase)
    if layout == "unaligned":
        return UnalignedDataset(root, phase, train=train, **common)
    if layout == "aligned":
        return AlignedDataset(root, phase, train=train, **common)
    return ImageFolderDataset(root, train=train, **common)
