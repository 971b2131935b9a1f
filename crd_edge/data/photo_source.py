"""The photos a view-based run trains and is scored on: built-in photos or a user's folder of
images and videos, split into train and held-out by a stated rule.

* Built-in: the built-in split (``crd_edge.data.builtin``), every photo with its licence.
* A folder with ``trainA/`` (and ``testA/``): those folders' images; CycleGAN's B side is not
  needed (the teacher labels every view).
* Any other folder: its images and videos; a file is held out when the CRC-32 of its name is
  divisible by 8 (``crd_edge.data.views.is_heldout_name``), so the split never changes when
  files are added. Videos give one frame every ``video_stride`` frames.

Unreadable files are skipped and counted, never fatal.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crd_edge.data.images import BadImage, SkipCounter, list_images, read_image
from crd_edge.data.views import is_heldout_name, resize_short_side
from crd_edge.errors import UserError

__all__ = ["PhotoSet", "VIDEO_EXTENSIONS", "load_photo_set"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MAX_SHORT_SIDE = 512  # photos are shrunk to this on load: views never need more, memory stays small


@dataclass
class PhotoSet:
    train: list[tuple[str, np.ndarray]]
    test: list[tuple[str, np.ndarray]]
    description: str
    manifest: list[dict] = field(default_factory=list)
    skipped: SkipCounter = field(default_factory=SkipCounter)

    def first_photos(self, count: int) -> "PhotoSet":
        """The same set with ``count`` training photos (all when 0 or more than there are): the
        first by the CRC-32 of their names, so a smaller set is always inside a larger one and
        the choice is the same on every machine. Frames of one video count as one photo."""
        if not count:
            return self
        names = sorted({_file_of(name) for name, _ in self.train}, key=lambda n: (zlib.crc32(n.encode()), n))
        if count >= len(names):
            return self
        kept = set(names[:count])
        train = [item for item in self.train if _file_of(item[0]) in kept]
        manifest = [m for m in self.manifest if m["split"] != "train" or _file_of(m["name"]) in kept]
        return PhotoSet(train, self.test, f"{self.description}; training on {count} of its {len(names)} "
                        f"training photos (data.train_photos)", manifest, self.skipped)


def _file_of(name: str) -> str:
    """The file a photo came from: a video's frames are named ``file#index``."""
    return name.split("#")[0]


def _shrink(image: np.ndarray) -> np.ndarray:
    return resize_short_side(image, MAX_SHORT_SIDE, 1) if min(image.shape[:2]) > MAX_SHORT_SIDE else image


def _video_frames(path: Path, stride: int, skipped: SkipCounter) -> list[tuple[str, np.ndarray]]:
    try:
        import cv2
    except ImportError:
        raise UserError(f"{path}: reading videos needs OpenCV: pip install 'crd-edge[demo]'") from None
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                frames.append((f"{path.name}#{index}", _shrink(np.ascontiguousarray(frame[..., ::-1]))))
            index += 1
    finally:
        capture.release()
    if not frames:
        skipped.add("unreadable", path)
    return frames


def _folder_items(folder: Path, stride: int, skipped: SkipCounter, min_size: int) -> list[tuple[str, np.ndarray]]:
    items = []
    for path in list_images(folder, skipped):
        try:
            items.append((path.name, _shrink(read_image(path, min_size=min_size))))
        except BadImage as error:
            skipped.add_error(error)
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
        items.extend(_video_frames(path, stride, skipped))
    return items


def load_photo_set(data: str | Path | None, *, video_stride: int = 30, min_size: int = 128) -> PhotoSet:
    """Train and held-out photos of ``data`` (``None`` / ``"builtin"``: the built-in photos)."""
    if data is None or str(data) == "builtin":
        from crd_edge.data.builtin import builtin_split, photo_manifest

        train = [(p.name, p.image) for p in builtin_split("train")]
        test = [(p.name, p.image) for p in builtin_split("test")]
        if not train:
            raise UserError("built-in photos unavailable (scikit-image and scikit-learn load none): "
                            "install them or pass --data FOLDER")
        return PhotoSet(train, test, f"built-in photos ({len(train)} train, {len(test)} held out)",
                        photo_manifest())
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"--data {root}: not a folder of images or videos (or omit it for the built-in photos)")
    skipped = SkipCounter()
    if (root / "trainA").is_dir():
        train = _folder_items(root / "trainA", video_stride, skipped, min_size)
        test = _folder_items(root / "testA", video_stride, skipped, min_size) if (root / "testA").is_dir() else []
        rule = "trainA/ and testA/"
    else:
        items = _folder_items(root, video_stride, skipped, min_size)
        # Frames of one video share its file name, so a video is wholly train or wholly held out.
        test = [item for item in items if is_heldout_name(_file_of(item[0]))]
        train = [item for item in items if not is_heldout_name(_file_of(item[0]))]
        rule = "files whose name's CRC-32 is divisible by 8 held out"
    if not train:
        raise UserError(f"--data {root}: no readable training images or video frames (expected images or videos "
                        f"in the folder, or in trainA/ and testA/; images need a short side of at least {min_size} px); "
                        f"{skipped.summary()}")
    manifest = [{"name": name, "split": split, "height": int(img.shape[0]), "width": int(img.shape[1]),
                 "file": str(root / _file_of(name))}
                for split, items in (("train", train), ("test", test)) for name, img in items]
    return PhotoSet(train, test, f"{root} ({len(train)} train, {len(test)} held out; {rule})", manifest, skipped)
