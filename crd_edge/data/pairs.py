"""Make a pix2pix edges->photo set (like edges2shoes) from any folder of photos.

Each readable photo is resized so its short side is ``size`` and centre-cropped to a square,
its edges are found with OpenCV's Canny after a light Gaussian blur (which keeps texture noise
out of the edge map), and the edges are drawn as black lines on white. The pair is written as
one image, edges | photo, into ``<out>/train/`` or ``<out>/test/``: the ``aligned`` layout of
``crd_edge.data.datasets`` with A = edges and B = photo, so ``distill --data <out>`` learns
edges -> photo in the default AtoB direction.

The train/test split is by file and deterministic: files are ranked by a hash of their name,
and the first ``round(n * test_fraction)`` readable ones go to test, so the same folder always
splits the same way on any machine, and a corrupt file never leaves test/ short. Unreadable
files are skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from crd_edge.data.images import BadImage, SkipCounter, list_images, read_image
from crd_edge.errors import UserError

__all__ = ["FORMATS", "PairsResult", "edge_map", "make_edge_pairs"]

FORMATS = ("jpg", "png")
JPEG_QUALITY = 95  # thin lines ring at lower qualities
BLUR_KERNEL = 5    # 5x5 Gaussian: removes pixel-level texture, keeps object outlines
CANNY_SIGMA = 0.33  # thresholds at median * (1 -/+ sigma): adapts to each photo's contrast


@dataclass
class PairsResult:
    """Counts of written pairs per split and of skipped source files (by reason)."""

    out: Path
    train: int = 0
    test: int = 0
    skipped: SkipCounter = field(default_factory=SkipCounter)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"out": str(self.out), "train": self.train, "test": self.test,
                "skipped": self.skipped.total, "skipped_by_reason": self.skipped.as_dict()}


def _cv2():
    from crd_edge._deps import import_cv2  # lazy: only this command needs OpenCV
    return import_cv2("crd-edge data pairs")


def edge_map(photo: np.ndarray) -> np.ndarray:
    """Canny edges of an RGB uint8 photo as black lines on white, uint8 HxWx3."""
    cv2 = _cv2()
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    gray = cv2.GaussianBlur(gray, (BLUR_KERNEL, BLUR_KERNEL), 0)
    median = float(np.median(gray))
    low = int(max(0, (1 - CANNY_SIGMA) * median))
    high = int(min(255, (1 + CANNY_SIGMA) * median))
    edges = cv2.Canny(gray, low, max(high, low + 1))
    lines = 255 - edges  # Canny marks edges 255 on 0; edges2shoes draws them dark on white
    return np.repeat(lines[..., None], 3, axis=2)


def _square(photo: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size``, then centre-crop to ``size`` x ``size``."""
    fitted = ImageOps.fit(Image.fromarray(photo), (size, size), Image.BICUBIC, centering=(0.5, 0.5))
    return np.asarray(fitted)


def _name_rank(path: Path) -> str:
    # sha256 of the name: stable across machines and Python runs (unlike hash()).
    return hashlib.sha256(path.name.encode("utf-8")).hexdigest()


def _test_count(n_files: int, test_fraction: float) -> int:
    """``round(n * test_fraction)``, at least one when the fraction is positive and there are
    two files or more, and never all: the aligned layout needs a train/ folder."""
    if not 0 <= test_fraction < 1:
        raise UserError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    n_test = round(n_files * test_fraction)
    if test_fraction > 0 and n_files >= 2:
        n_test = max(1, n_test)
    return min(n_test, max(0, n_files - 1))


def _write_atomic(image: np.ndarray, path: Path, fmt: str) -> None:
    """Write via a hidden temp file and rename, so a crash never leaves a half image."""
    tmp = path.with_name(f".{path.name}.tmp")
    options = {"quality": JPEG_QUALITY} if fmt == "jpg" else {}
    Image.fromarray(image).save(tmp, format="JPEG" if fmt == "jpg" else "PNG", **options)
    os.replace(tmp, path)


def _unique_name(path: Path, fmt: str, used: set[str]) -> str:
    """``photo.jpg``; ``photo-png.jpg`` when photo.png and photo.jpg share a stem."""
    name = f"{path.stem}.{fmt}"
    if name in used:
        name = f"{path.stem}-{path.suffix.lstrip('.').lower()}.{fmt}"
    k = 2
    while name in used:
        name, k = f"{path.stem}-{k}.{fmt}", k + 1
    used.add(name)
    return name


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[], None]]:
    """A rich bar over the source files on stderr (nothing when ``quiet``); yields ``advance()``."""
    if quiet:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task("edge pairs", total=total)
        yield lambda: bar.advance(task)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder for train/ and test/")
    for split in ("train", "test"):
        folder = out / split
        if folder.is_dir() and list_images(folder) and not force:
            raise UserError(f"{folder} already holds images: choose another --out, or add "
                            "--force to write into it")


def make_edge_pairs(src: str | Path, out: str | Path, size: int = 256,
                    test_fraction: float = 0.1, fmt: str = "jpg", force: bool = False,
                    quiet: bool = False) -> PairsResult:
    """Write an edges|photo pair for every readable image in ``src`` into ``out/train|test``.

    Raises ``UserError`` for a missing or empty ``src``, bad options, an ``out`` that already
    holds pairs (unless ``force``), or a folder where no image can be read.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if size < 16:
        raise UserError(f"--size must be at least 16, got {size}")
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    files = list_images(src)
    if not files:
        raise UserError(f"no images in {src}: give a folder of photos")
    n_test = _test_count(len(files), test_fraction)
    _cv2()  # fail before writing anything when OpenCV is missing
    _check_out(out, force)
    result = PairsResult(out)
    used: dict[str, set[str]] = {"train": set(), "test": set()}
    written_test: list[Path] = []
    with _progress(len(files), quiet) as advance:
        for path in sorted(files, key=_name_rank):  # test takes the first readable ones
            split = "test" if result.test < n_test else "train"
            try:
                photo = _square(read_image(path), size)
            except BadImage as e:
                result.skipped.add_error(e)
            else:
                pair = np.concatenate([edge_map(photo), photo], axis=1)
                # Folders appear with their first pair: an empty test/ would break the layout.
                (out / split).mkdir(parents=True, exist_ok=True)
                target = out / split / _unique_name(path, fmt, used[split])
                _write_atomic(pair, target, fmt)
                if split == "test":
                    written_test.append(target)
                setattr(result, split, getattr(result, split) + 1)
            advance()
    if result.train + result.test == 0:
        raise UserError(f"none of the {len(files)} images in {src} can be read "
                        f"({result.skipped.summary()}): replace or remove them")
    if result.train == 0:  # every file after the test ones was unreadable
        _move_to_train(written_test, out, result)
    return result


def _move_to_train(test_pairs: list[Path], out: Path, result: PairsResult) -> None:
    """Keep the layout usable: distill --data reads train/, so the test pairs go there."""
    (out / "train").mkdir(parents=True, exist_ok=True)
    for path in test_pairs:
        os.replace(path, out / "train" / path.name)
    try:
        (out / "test").rmdir()  # an empty test/ would fail `--phase test` loudly later
    except OSError:
        pass  # not empty: it holds files of an earlier run (--force)
    result.train, result.test = result.test, 0


