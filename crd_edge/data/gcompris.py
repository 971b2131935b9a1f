"""Real photographs from Debian's ``gcompris-qt-data`` package (monuments, animals, fish, dams,
the sea), read out of its Qt resource files, each with its author and licence.

``sudo apt-get install --no-install-recommends gcompris-qt-data`` (or ``scripts/install.sh
--with-photos``) puts about 200 usable photos under ``/usr/share/gcompris-qt/rcc``. They are
Wikimedia Commons / publicdomainpictures.net photos (public domain, CC0, CC-BY, CC-BY-SA); the
licence of every file is given in a README beside it inside the resource file, and is kept with
the photo so a run can cite what it trained on. Drawings, icons and paintings in the same package
are left out by choosing only the folders below.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge.data.qt_rcc import RccError, read_rcc

__all__ = ["GCOMPRIS_RCC", "PHOTO_FOLDERS", "GcomprisPhoto", "gcompris_photos"]

log = logging.getLogger(__name__)

GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
PACKAGE = "gcompris-qt-data (Debian)"
# activity -> folder prefixes (inside the resource tree) that hold photographs only.
PHOTO_FOLDERS: dict[str, tuple[str, ...]] = {
    "explore_monuments": ("resource/",),
    "erase": ("resource/",),
    "explore_farm_animals": ("resource/animals/",),
    "explore_world_animals": ("resource/animals/",),
    "explore_world_music": ("resource/music/",),
    "clickgame": ("resource/sea",),
    "categorization": ("resource/images/monuments/", "resource/images/fishes/", "resource/images/renewable/"),
}
MIN_SIDE = 200       # smaller files are thumbnails
MAX_SHORT_SIDE = 512  # decoded photos are shrunk to this: training views never need more


@dataclass(frozen=True, eq=False)
class GcomprisPhoto:
    name: str        # gcompris_<activity>_<file stem>
    activity: str
    path: str        # path inside the resource file
    image: np.ndarray  # uint8 HxWx3
    licence: dict[str, str]


def parse_readme(text: str) -> dict[str, dict[str, str]]:
    """File name -> {copyright, licence, source} from a GCompris README (blank-line separated
    blocks of ``Key: value`` lines, then ``Files:`` followed by one file name per line)."""
    by_file: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text):
        fields, files, in_files = {}, [], False
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("copyright", "license", "licence", "source", "files", "comments"):
                in_files = key.strip().lower() == "files"
                if value.strip() and in_files:
                    files.extend(v.strip() for v in value.split(","))
                elif not in_files:
                    fields[key.strip().lower().replace("license", "licence")] = value.strip()
            elif in_files and line.strip():
                files.append(line.strip())
        for name in files:
            by_file[name.split("/")[-1]] = {k: fields.get(k, "") for k in ("copyright", "licence", "source")}
    return by_file


def _decode(blob: bytes) -> np.ndarray | None:
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(blob))
        im.load()
    except Exception:  # noqa: BLE001 - an undecodable entry is not a photo we can use
        return None
    if min(im.size) < MIN_SIDE:
        return None
    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        if np.asarray(rgba)[..., 3].min() < 255:
            return None  # cut-outs on transparency are not photographs of scenes
        im = rgba
    im = im.convert("RGB")
    short = min(im.size)
    if short > MAX_SHORT_SIDE:
        scale = MAX_SHORT_SIDE / short
        im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.Resampling.LANCZOS)
    return np.asarray(im)


def gcompris_photos(root: Path = GCOMPRIS_RCC) -> list[GcomprisPhoto]:
    """Every photo of :data:`PHOTO_FOLDERS` found under ``root``, sorted by activity and path
    (empty when the package is not installed)."""
    photos: list[GcomprisPhoto] = []
    for activity, folders in PHOTO_FOLDERS.items():
        rcc = root / f"{activity}.rcc"
        if not rcc.is_file():
            continue
        prefixes = tuple(f"/gcompris/src/activities/{activity}/{f}" for f in folders)
        try:
            files = read_rcc(rcc, lambda p: p.startswith(prefixes))
        except RccError as exc:
            log.warning("skipped %s: %s", rcc, exc)
            continue
        licences: dict[str, dict[str, str]] = {}
        for path, blob in files.items():
            if path.endswith("/README"):
                licences.update(parse_readme(blob.decode("utf-8", "replace")))
        for path in sorted(p for p in files if p.lower().endswith((".webp", ".jpg", ".jpeg", ".png"))):
            image = _decode(files[path])
            if image is None:
                continue
            image.setflags(write=False)
            file_name = path.rsplit("/", 1)[-1]
            licence = {"package": PACKAGE, "file": f"{rcc}:{path}",
                       **licences.get(file_name, {"copyright": "", "licence": "see the README beside it", "source": ""})}
            photos.append(GcomprisPhoto(f"gcompris_{activity}_{Path(file_name).stem}", activity, path, image, licence))
    return photos
