"""Evaluation images: where they come from, how they are fitted to a model, and uint8 rounding.

Every figure of ``crd-edge eval`` is computed on uint8 images, as a user would save them: model
outputs in [-1, 1] become ``round((y + 1) * 127.5)`` clipped to [0, 255]. Rounding, not
truncation: the CRD reference code truncates (``astype(uint8)``), which darkens every image by
half a level on average and biases FID (docs/method.md, "Where crd-edge departs").

Images are streamed (:meth:`ImageSource.iter_images`): a reference folder of thousands of
photos is never held in memory at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError

__all__ = ["ImageSource", "data_source", "reference_source", "fit_image"]


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 HxWx3 -> ``height`` x ``width``: bicubic resize to a ``max(height, width)`` square,
    then a centre crop. For square sizes this is CycleGAN's test transform (resize straight to
    the size) and it is what export verification does, so all paths see the same pixels."""
    from crd_edge.data.transforms import resize

    side = max(height, width)
    square = resize(np.asarray(image), side)
    top, left = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(square[top:top + height, left:left + width])


@dataclass
class ImageSource:
    """A set of images: a description, a cache key that changes when the images do, a reader.

    ``key`` for folders is a hash of each file's name, size and modification time (ns): cheap
    (no image is read to check the cache) and it changes whenever a file is edited, added,
    removed or renamed; copying a folder elsewhere with new mtimes only costs a recomputation.
    Hashing the contents would read every image on every run just to decide nothing changed.
    The built-in photos are hashed by content (a few arrays already in memory).
    """

    description: str
    key: str
    count: int
    _paths: list[Path] = field(default_factory=list, repr=False)
    _arrays: list[tuple[str, np.ndarray]] = field(default_factory=list, repr=False)
    skipped: dict[str, int] = field(default_factory=dict)

    def iter_images(self, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, uint8 HxWx3)`` for each image; unreadable files are skipped and counted."""
        from crd_edge.data.images import BadImage, read_image

        n = 0
        for name, array in self._arrays:
            if limit is not None and n >= limit:
                return
            n += 1
            yield name, array
        for path in self._paths:
            if limit is not None and n >= limit:
                return
            try:
                image = read_image(path, min_size=8)
            except BadImage as exc:
                self.skipped[exc.reason] = self.skipped.get(exc.reason, 0) + 1
                continue
            n += 1
            yield path.name, image


def _folder_key(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.parent.name}/{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "files:" + digest.hexdigest()


def _from_folders(folders: list[Path], description: str, limit: int | None) -> ImageSource:
    from crd_edge.data.images import list_images

    paths = [p for folder in folders for p in list_images(folder)]
    if not paths:
        raise UserError(f"no images in {', '.join(map(str, folders))}: expected .png/.jpg/... files")
    if limit is not None:
        paths = paths[:limit]
    return ImageSource(description, _folder_key(paths), len(paths), _paths=paths)


def _builtin(limit: int | None) -> ImageSource:
    from crd_edge.data.builtin import builtin_split

    photos = builtin_split("test")
    if not photos:
        raise UserError("no built-in held-out photos could be loaded (scikit-image/scikit-learn "
                        "missing?): pass --data DIR")
    photos = photos[:limit] if limit is not None else photos
    digest = hashlib.sha256()
    for photo in photos:
        digest.update(photo.name.encode() + json.dumps(photo.image.shape).encode())
        digest.update(np.ascontiguousarray(photo.image).tobytes())
    names = ", ".join(p.name for p in photos)
    return ImageSource(f"builtin:test ({names})", "builtin:" + digest.hexdigest(), len(photos),
                       _arrays=[(p.name, p.image) for p in photos])


def data_source(data: str | Path | None = "builtin", limit: int | None = None) -> ImageSource:
    """The model's inputs: ``"builtin"`` (the held-out built-in photos), a CycleGAN folder
    (its ``testA``) or a folder of images."""
    if data is None or str(data) == "builtin":
        return _builtin(limit)
    root = Path(data).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"--data {data}: {what}; pass a folder of images, a CycleGAN folder (its "
                        "testA is used) or 'builtin'")
    if (root / "testA").is_dir():
        return _from_folders([root / "testA"], f"{root / 'testA'}", limit)
    return _from_folders([root], str(root), limit)


def reference_source(folder: str | Path, limit: int | None = None) -> ImageSource:
    """Real target-domain images for FID/KID: a folder of images, or a CycleGAN folder, whose
    ``trainB`` and ``testB`` are used together (as the CycleGAN FID protocol does, docs/method.md,
    "Published figures")."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"--reference {folder}: {what}; pass 'teacher' or a folder of real "
                        "target-domain images")
    domain = [root / sub for sub in ("trainB", "testB") if (root / sub).is_dir()]
    if domain:
        return _from_folders(domain, " + ".join(map(str, domain)), limit)
    return _from_folders([root], str(root), limit)
