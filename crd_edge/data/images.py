"""Reading user images safely: every file becomes uint8 HxWx3 RGB, or a ``BadImage`` with a reason.

Real folders hold grayscale scans, palette GIFs, RGBA screenshots, CMYK JPEGs, 16-bit PNGs,
half-downloaded files and stray non-images. ``read_image`` normalises the good ones and rejects
the bad ones with a short, countable reason so a dataset can skip them and report how many.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crd_edge.errors import UserError

__all__ = [
    "BAD_IMAGE_REASONS",
    "BadImage",
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "SkipCounter",
    "list_images",
    "read_image",
]

#: File suffixes (lower case) treated as images by ``list_images``.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
)

#: Every reason a ``BadImage`` can carry (keys of ``SkipCounter.as_dict()``).
BAD_IMAGE_REASONS: tuple[str, ...] = (
    "unreadable",    # I/O error: missing file, permission denied, a directory
    "not_an_image",  # PIL cannot identify the format (e.g. a text file named .png)
    "truncated",     # the file ends before the image data does
    "corrupt",       # the decoder failed for another reason
    "too_large",     # over PIL's decompression-bomb limit
    "too_small",     # short side below ``min_size``
    "unsupported",   # a pixel mode we do not know how to turn into RGB
)

#: Images with more pixels than this are downscaled once, when read, to fit it (aspect kept):
#: no training size needs more, and a 144-megapixel PNG would otherwise cost 0.4 GB and a second
#: to decode on every use. Above PIL's own bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2, 179 MP)
#: a file is rejected as ``too_large``.
MAX_PIXELS = 16_777_216  # 4096 x 4096

#: How many bytes of large decoded images an ``ImageFiles`` keeps, in each process that reads
#: it (a DataLoader worker starts empty); the rest are read again. Arrays only: a reader that
#: returns pairs keeps nothing.
KEEP_BYTES = 512 * 1024 * 1024

# Half-written files must be rejected, not silently padded with grey: this module relies on
# PIL's default ImageFile.LOAD_TRUNCATED_IMAGES = False and never changes it (tests check it).


class BadImage(Exception):
    """An image file that cannot be used; ``reason`` is one of ``BAD_IMAGE_REASONS``.

    Not a ``UserError``: one bad file among thousands is skipped and counted, not fatal.
    """

    def __init__(self, reason: str, path: str | Path | None = None, detail: str = "") -> None:
        self.reason = reason
        self.path = None if path is None else Path(path)
        self.detail = detail
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{reason}" + (f" ({detail})" if detail else ""))


def _scale_16bit(arr: np.ndarray) -> np.ndarray:
    """Map 0..65535 to 0..255 with rounding (x / 257 maps 65535 exactly to 255)."""
    arr = np.clip(arr.astype(np.float64), 0, 65535)
    return np.round(arr / 257.0).astype(np.uint8)


def _composite_on_white(im: Image.Image) -> Image.Image:
    """Flatten transparency onto white, the background a viewer would show."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any supported mode to uint8 HxWx3."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        # Mode "I" (32-bit) holds either 8-bit or 16-bit data depending on the writer.
        if mode == "I" and arr.max(initial=0) <= 255:
            gray = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            gray = _scale_16bit(arr)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0  # float images are [0,1] or [0,255]
        gray = np.round(np.clip(arr * scale, 0, 255)).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info  # PNG tRNS / GIF colour key
    ):
        return np.asarray(_composite_on_white(im), dtype=np.uint8).copy()
    if mode in ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        # Pillow reads 48-bit PNGs as RGB keeping the high byte (floor(x / 256)), which is
        # within one level of round(x / 257): close enough, and Pillow offers no 16-bit RGB mode.
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    raise BadImage("unsupported", detail=f"pixel mode {mode!r}")


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos store rotation there); ignore broken EXIF."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not reject good pixels
        return im


def read_image(path: str | Path, min_size: int = 32) -> np.ndarray:
    """Read an image file as uint8 RGB, shape (H, W, 3).

    The whole file is decoded (so truncated files fail here, not mid-training), EXIF
    orientation is applied, alpha is composited on white, 16-bit data is scaled to 8 bit.
    Raises ``BadImage`` with a reason from ``BAD_IMAGE_REASONS``; images whose short side is
    below ``min_size`` pixels are rejected as ``too_small``.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # PIL warns between 89 and 179 MP; such images are downscaled below, not an error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    im.draft("RGB", _fit(im.size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, far cheaper
                im.load()  # force the full decode: Image.open only parses the header
                im = _exif_upright(im)
                if im.width * im.height > MAX_PIXELS:
                    im = im.resize(_fit(im.size), Image.Resampling.BOX)  # area average: no aliasing
                arr = _to_rgb_array(im)
    except BadImage as e:
        raise BadImage(e.reason, path, e.detail) from None
    except Image.DecompressionBombError as e:
        raise BadImage("too_large", path, str(e)) from None
    except UnidentifiedImageError:
        raise BadImage("not_an_image", path) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise BadImage("unreadable", path, e.strerror or type(e).__name__) from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - decoders throw OSError, SyntaxError, struct.error...
        # Pillow reports short reads as OSError("image file is truncated ...") or
        # OSError("Truncated File Read"); everything else a decoder throws counts as corrupt,
        # so one odd file can never stop a dataset from being built.
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise BadImage(reason, path, str(e)) from None
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise BadImage("too_small", path, f"{w}x{h}, need at least {min_size} px on the short side")
    return arr


def _fit(size: tuple[int, int]) -> tuple[int, int]:
    """(w, h) scaled down to at most ``MAX_PIXELS`` pixels, aspect ratio kept."""
    w, h = size
    scale = min(1.0, (MAX_PIXELS / (w * h)) ** 0.5)
    return max(1, int(w * scale)), max(1, int(h * scale))


def list_images(folder: str | Path, skipped: SkipCounter | None = None) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), sorted by name.

    Selected by extension, case-insensitive. Hidden files are ignored: macOS leaves
    ``._name.jpg`` metadata files beside copied photos that are not images. Entries with an
    image's name that are not regular files (a FIFO, which would block the reader for ever, a
    socket, a folder, a dangling link or a link loop) are left out and, given ``skipped``,
    counted as ``unreadable``. Raises ``UserError`` if ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist or is not a folder: check the path")
    files = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.startswith("."):
            continue
        if p.is_file():  # follows links; False for a loop or a dangling link
            files.append(p)
        elif skipped is not None:
            skipped.add("unreadable", p)
    return files


class SkipCounter:
    """Counts skipped files by reason and keeps a few example paths for the message."""

    def __init__(self, max_examples: int = 3) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self._max_examples = max_examples

    def add(self, reason: str, path: str | Path | None = None) -> None:
        """Record one skipped file."""
        self.counts[reason] += 1
        if path is not None:
            examples = self.examples.setdefault(reason, [])
            if len(examples) < self._max_examples:
                examples.append(str(path))

    def add_error(self, error: BadImage) -> None:
        """Record the file a ``BadImage`` was raised for."""
        self.add(error.reason, error.path)

    @property
    def total(self) -> int:
        """Number of skipped files, all reasons together."""
        return sum(self.counts.values())

    def __len__(self) -> int:
        return self.total

    def as_dict(self) -> dict[str, int]:
        """``{reason: count}``, sorted by reason, for JSON reports."""
        return dict(sorted(self.counts.items()))

    def summary(self) -> str:
        """One line, e.g. ``skipped 3 files: 2 truncated (a.jpg, b.jpg), 1 too_small (c.png)``."""
        if not self.counts:
            return "skipped 0 files"
        parts = []
        for reason, n in sorted(self.counts.items()):
            names = ", ".join(Path(p).name for p in self.examples.get(reason, []))
            parts.append(f"{n} {reason}" + (f" ({names})" if names else ""))
        noun = "file" if self.total == 1 else "files"
        return f"skipped {self.total} {noun}: " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"SkipCounter({self.as_dict()})"


T = TypeVar("T")


class ImageFiles(Generic[T]):
    """The readable image files of one folder, checked once when built.

    ``reader(path)`` decodes one file (raising ``BadImage``); files it rejects are dropped and
    counted in ``skipped``. Later failures (a file changed on disk) are counted once and
    skipped by ``first_good``. Raises ``UserError`` (with ``expected`` appended) for a
    missing folder, a folder without images, or one where no image can be read.
    """

    def __init__(self, folder: Path, reader: Callable[[Path], T], skipped: SkipCounter,
                 expected: str = "expected a folder of images") -> None:
        if not folder.is_dir():
            raise UserError(f"data folder {folder} does not exist or is not a folder: {expected}")
        candidates = list_images(folder, skipped)
        if not candidates:
            exts = ", ".join(IMAGE_EXTENSIONS)
            raise UserError(f"no images ({exts}) in {folder}: {expected}")
        self.folder, self._reader, self._skipped = folder, reader, skipped
        self._kept: dict[Path, T] = {}
        self._kept_bytes = 0
        self._keep_lock = threading.Lock()
        # Decoding releases the GIL, so threads make the one-off check of big folders quicker.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            errors = list(pool.map(self._check, candidates))
        self.paths: list[Path] = []
        for path, error in zip(candidates, errors):
            if error is None:
                self.paths.append(path)
            else:
                skipped.add_error(error)
        if not self.paths:
            raise UserError(
                f"none of the {len(candidates)} images in {folder} can be read "
                f"({skipped.summary()}): replace or remove them"
            )
        self._bad: set[int] = set()

    def _check(self, path: Path) -> BadImage | None:
        try:
            self._keep_if_large(path, self._reader(path))
        except BadImage as e:
            return e
        return None

    def _keep_if_large(self, path: Path, image: T) -> T:
        """Keep a large decoded image (over a quarter of ``MAX_PIXELS``: those are the files that
        cost far more to decode than to train on) while the kept ones fit in ``KEEP_BYTES``."""
        shape, nbytes = getattr(image, "shape", (0, 0)), getattr(image, "nbytes", 0)
        if shape[0] * shape[1] * 4 <= MAX_PIXELS:
            return image
        with self._keep_lock:
            if path not in self._kept and self._kept_bytes + nbytes <= KEEP_BYTES:
                self._kept[path] = image
                self._kept_bytes += nbytes
        return image

    def __getstate__(self) -> dict:
        """DataLoader workers get a copy: without the lock (it does not pickle) and without the
        kept images (each worker would hold its own copy of up to KEEP_BYTES)."""
        state = dict(self.__dict__)
        del state["_keep_lock"]
        state["_kept"], state["_kept_bytes"] = {}, 0
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._keep_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, j: int) -> T:
        """Read file ``j``; on failure count it, remember it, and raise ``BadImage``."""
        path = self.paths[j]
        if path in self._kept:
            return self._kept[path]
        try:
            return self._keep_if_large(path, self._reader(path))
        except BadImage as e:
            if j not in self._bad:
                self._bad.add(j)
                self._skipped.add_error(e)
            raise

    def first_good(self, start: int) -> tuple[int, T]:
        """File ``start`` or, if it fails, the next one that reads (wrapping around)."""
        n = len(self.paths)
        for k in range(n):
            j = (start + k) % n
            if j in self._bad:
                continue
            try:
                return j, self.read(j)
            except BadImage:
                continue
        raise UserError(f"every image in {self.folder} failed to load ({self._skipped.summary()})")
