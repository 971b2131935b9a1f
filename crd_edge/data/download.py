"""Download the standard CycleGAN and pix2pix data sets into the folders ``distill --data`` reads.

The registry mirrors the upstream download scripts of junyanz/pytorch-CycleGAN-and-pix2pix
(``datasets/download_cyclegan_dataset.sh`` and ``download_pix2pix_dataset.sh``): CycleGAN sets
are ``{base}/cyclegan/datasets/{name}.zip`` and hold ``name/trainA trainB testA testB``
(unaligned); pix2pix sets are ``{base}/pix2pix/datasets/{name}.tar.gz`` and hold
``name/train val test`` with A|B images side by side (aligned). ``facades`` and ``maps`` exist
in both families, so they are named ``cyclegan/facades``, ``pix2pix/facades`` and so on.
Cityscapes is listed but not downloaded: its licence forbids redistribution (upstream says so
too), so the entry explains where to get it.

The download streams into ``<dest>/.<folder>.part`` and resumes it with an HTTP Range request
(a server that ignores Range answers 200, and the file restarts from zero). The archive is
checked (size against Content-Length, sha256 where the registry knows one), extracted into a
temporary folder inside ``dest`` without letting any member escape it, and renamed into place,
so ``<dest>/<folder>/`` either is complete or does not exist. Nothing touches the network at
import time. The server root is ``--mirror``, else ``$CRD_EDGE_DATA_MIRROR``, else Berkeley's.
"""

from __future__ import annotations

import difflib
import gzip
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from crd_edge.errors import UserError

__all__ = ["DATASETS", "DEFAULT_MIRROR", "MIRROR_ENV", "DownloadResult", "RemoteDataset",
           "check_complete", "download_dataset", "fetch", "find_dataset", "open_url", "read_page", "render_list",
           "resolve_mirror"]

DEFAULT_MIRROR = "https://efrosgans.eecs.berkeley.edu"
MIRROR_ENV = "CRD_EDGE_DATA_MIRROR"
CHUNK_BYTES = 1 << 18  # 256 KiB: big enough for throughput, small enough for a smooth bar
TIMEOUT_S = 60.0       # per socket operation, not for the whole download
# A hostile or broken server must not fill the disk: a data set may be at most this many times
# its listed size (the listed sizes are rounded, and a mirror may pack a little differently), and
# one whose size is not listed at most UNLISTED_LIMIT.
LISTED_SIZE_SLACK = 2
UNLISTED_LIMIT = 8 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class RemoteDataset:
    """One downloadable data set.

    ``approx_bytes`` is the archive size as listed by the server, rounded: it only feeds the
    progress bar when the server sends no Content-Length and a note when the real size is far
    off. It is not a checksum. ``sha256`` is checked when set; no entry sets one because the
    upstream project publishes none and we will not invent them.
    """

    name: str                        # the file name on the server, as in the upstream scripts
    family: str                      # "cyclegan" (zip, unaligned) or "pix2pix" (tar.gz, aligned)
    description: str
    approx_bytes: int | None = None
    sha256: str | None = None
    manual: str | None = None        # set when it cannot be downloaded: where to get it instead
    qualified: bool = False          # the name exists in both families: key is family/name

    @property
    def key(self) -> str:
        """The name users type: ``horse2zebra``, or ``pix2pix/facades`` where both exist."""
        return f"{self.family}/{self.name}" if self.qualified else self.name

    @property
    def folder(self) -> str:
        """Folder name under ``dest``; the family is appended where the name is shared."""
        return f"{self.name}_{self.family}" if self.qualified else self.name

    @property
    def archive(self) -> str:
        """``zip`` or ``tar.gz``."""
        return "zip" if self.family == "cyclegan" else "tar.gz"

    @property
    def layout(self) -> str:
        """The ``crd_edge.data.datasets`` layout the extracted folder has."""
        return "unaligned" if self.family == "cyclegan" else "aligned"

    def url(self, mirror: str) -> str:
        """Where the archive lives under ``mirror`` (the server root, same paths as Berkeley's)."""
        return f"{mirror.rstrip('/')}/{self.family}/datasets/{self.name}.{self.archive}"


def _cyclegan(name: str, description: str, mib: float | None, qualified: bool = False) -> RemoteDataset:
    return RemoteDataset(name, "cyclegan", description,
                         None if mib is None else int(mib * MiB), qualified=qualified)


def _pix2pix(name: str, description: str, mib: float | None, qualified: bool = False) -> RemoteDataset:
    return RemoteDataset(name, "pix2pix", description,
                         None if mib is None else int(mib * MiB), qualified=qualified)


_CITYSCAPES_HOWTO = (
    "its licence forbids redistribution, so it cannot be downloaded here: register at "
    "https://www.cityscapes-dataset.com, get gtFine_trainvaltest.zip and "
    "leftImg8bit_trainvaltest.zip, prepare them with the upstream "
    "datasets/prepare_cityscapes_dataset.py, and pass the folder with --data"
)

#: Every known data set by key. Sizes are approximate (MiB as listed by the server; None where
#: not known) and only used for the progress bar and a note, never as a hard check.
DATASETS: dict[str, RemoteDataset] = {d.key: d for d in (
    _cyclegan("horse2zebra", "horses <-> zebras (ImageNet); the CRD paper's main task", 111),
    _cyclegan("apple2orange", "apples <-> oranges (ImageNet)", 75),
    _cyclegan("summer2winter_yosemite", "Yosemite in summer <-> winter (Flickr)", 126),
    _cyclegan("monet2photo", "Monet paintings <-> landscape photos", 291),
    _cyclegan("cezanne2photo", "Cezanne paintings <-> landscape photos", 267),
    _cyclegan("ukiyoe2photo", "Ukiyo-e prints <-> landscape photos", 279),
    _cyclegan("vangogh2photo", "Van Gogh paintings <-> landscape photos", 292),
    _cyclegan("iphone2dslr_flower", "iPhone <-> DSLR flower photos (shallow depth of field)", 324),
    _cyclegan("ae_photos", "a small set of test photos", 10),
    _cyclegan("facades", "facade labels <-> photos, unpaired folders", 34, qualified=True),
    _cyclegan("maps", "Google maps <-> aerial photos, unpaired folders", None, qualified=True),
    _pix2pix("facades", "facade photos | labels, 400 pairs (labels->photo is BtoA)", 29, qualified=True),
    _pix2pix("maps", "aerial photos | Google maps, 1096 pairs", 239, qualified=True),
    _pix2pix("edges2shoes", "edges | shoe photos, 50k pairs; the CRD paper's pix2pix task", 2048),
    _pix2pix("edges2handbags", "edges | handbag photos, 137k pairs", 8192),
    _pix2pix("night2day", "night and day photos of the same scenes, 20k pairs", 1946),
    RemoteDataset("cityscapes", "pix2pix", "semantic labels | street photos",
                  manual=_CITYSCAPES_HOWTO),
)}


@dataclass
class DownloadResult:
    """What ``download_dataset`` did: ``path`` holds the data set either way."""

    key: str
    path: Path
    url: str
    layout: str | None = None        # as detected by crd_edge.data.datasets, None if unknown
    skipped: bool = False            # the folder already existed and --force was not given
    downloaded_bytes: int = 0        # bytes received in this call
    resumed_from: int = 0            # bytes already in the .part file when this call started
    archive_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"dataset": self.key, "path": str(self.path), "url": self.url,
                "layout": self.layout, "skipped": self.skipped,
                "downloaded_bytes": self.downloaded_bytes, "resumed_from": self.resumed_from,
                "archive_bytes": self.archive_bytes, "notes": self.notes}


# ------------------------------------------------------------------------------- registry


def _by_bare_name(name: str) -> list[RemoteDataset]:
    return [d for d in DATASETS.values() if d.name == name]


def find_dataset(name: str) -> RemoteDataset:
    """The registry entry for ``name`` (``horse2zebra``, ``pix2pix/facades``...); ``UserError``
    for unknown or ambiguous names, suggesting the closest."""
    wanted = name.strip().lower()
    if wanted in DATASETS:
        return DATASETS[wanted]
    family, _, bare = wanted.rpartition("/")
    matches = [d for d in _by_bare_name(bare) if not family or d.family == family]
    if len(matches) == 1:
        return matches[0]  # e.g. "cyclegan/horse2zebra": a redundant family is fine
    if len(matches) > 1:
        keys = " or ".join(d.key for d in matches)
        raise UserError(f"dataset {name!r} exists as both CycleGAN (unaligned) and pix2pix "
                        f"(aligned): name one, {keys}")
    candidates = list(DATASETS) + sorted({d.name for d in DATASETS.values()})
    close = difflib.get_close_matches(wanted, candidates, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(f"unknown dataset {name!r}: {hint}available: {', '.join(DATASETS)} "
                    "(see `crd-edge data list`)")


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    return f"{n / MiB:.0f} MB" if n >= MiB else f"{n / 1024:.0f} KB"


def render_list() -> str:
    """A plain-text table of the registry, for ``crd-edge data list``."""
    rows = [(d.key, d.layout if not d.manual else "manual", "~" + _human(d.approx_bytes)
             if d.approx_bytes else "", d.description) for d in DATASETS.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{'name':<{widths[0]}}  {'layout':<{widths[1]}}  {'size':>{widths[2]}}  description"]
    lines += [f"{k:<{widths[0]}}  {lay:<{widths[1]}}  {size:>{widths[2]}}  {desc}"
              for k, lay, size, desc in rows]
    return "\n".join(lines)


def resolve_mirror(mirror: str | None = None) -> str:
    """The server root: ``mirror``, else ``$CRD_EDGE_DATA_MIRROR``, else Berkeley's."""
    source = "--mirror" if mirror else MIRROR_ENV
    value = (mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).strip()
    if not re.match(r"^https?://[^/\s]+", value):
        raise UserError(f"{source} {value!r} is not an http(s) URL: give the server root, "
                        f"e.g. {DEFAULT_MIRROR}")
    return value.rstrip("/")


# ------------------------------------------------------------------------------- transfer


class _RangeNotSatisfiable(Exception):
    """HTTP 416 for a resume request; ``total`` from ``Content-Range: bytes */total``."""

    def __init__(self, total: int | None) -> None:
        super().__init__(total)
        self.total = total


# What a failed data-set download suggests; other downloads (assets) pass their own.
DATASET_ADVICE = ("check the network or --mirror, or download the archive yourself, extract it and pass "
                  "the folder to distill --data")


def _unreachable(url: str, reason: object, advice: str) -> UserError:
    return UserError(f"cannot reach {url} ({reason}): {advice}")


def open_url(url: str, start: int, advice: str = DATASET_ADVICE, accept: str | None = None):
    """GET ``url`` from byte ``start``; HTTP and network failures become ``UserError``."""
    headers = {"User-Agent": "crd-edge", "Accept-Encoding": "identity"}
    if accept:
        headers["Accept"] = accept
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:
            raise _RangeNotSatisfiable(_content_range(e.headers.get("Content-Range"))[1]) from None
        if e.code == 404:
            raise UserError(f"not found (HTTP 404): {url}: {advice}") from None
        reason = (str(e.reason).strip().splitlines() or [""])[0]  # a redirect loop's reason has three lines
        raise UserError(f"HTTP {e.code} {reason} from {url}: try again later; {advice}") from None
    except urllib.error.URLError as e:
        raise _unreachable(url, e.reason, advice) from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeout, reset, bad URL
        raise _unreachable(url, e, advice) from None


def read_page(url: str, limit: int, advice: str = DATASET_ADVICE, accept: str | None = None) -> bytes:
    """The whole body of a small page (an index), at most ``limit`` bytes: an endless or huge
    body, a stall or a reset is one error, not a memory blow-up or a traceback."""
    with open_url(url, 0, advice, accept=accept) as response:
        try:
            raw = response.read(limit + 1)  # never read(): it allocates whatever Content-Length says
        except (OSError, http.client.HTTPException) as e:
            raise _unreachable(url, e, advice) from None
    if len(raw) > limit:
        raise UserError(f"{url}: the page is {_human_limit(limit)}: not a package index page; {advice}")
    return raw


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from ``bytes 100-199/1000`` or ``bytes */1000``; None where absent."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", header or "")
    if not m:
        return None, None
    first = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return first, total


@contextmanager
def _progress(description: str, total: int | None, done: int, quiet: bool) -> Iterator:
    """A rich download bar on stderr; yields ``advance(n)``."""
    if quiet:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


@dataclass
class _Transfer:
    received: int = 0      # bytes received in this call
    resumed_from: int = 0  # bytes kept from an earlier attempt
    total: int | None = None


class _TooLarge(Exception):
    """The body ran past the size the caller allows."""


def _stream(response, out: IO[bytes], advance, room: int | None = None) -> int:
    """Copy the body into ``out``; at most ``room`` bytes (None: no limit)."""
    received = 0
    while True:
        chunk = response.read(CHUNK_BYTES)
        if not chunk:
            return received
        received += len(chunk)
        if room is not None and received > room:
            raise _TooLarge
        out.write(chunk)
        advance(len(chunk))


def _human_limit(limit: int) -> str:
    return f"more than the {_human(limit)} expected"


def fetch(url: str, part: Path, label: str, approx_total: int | None, quiet: bool,
          advice: str = DATASET_ADVICE, limit: int | None = None) -> _Transfer:
    """Download ``url`` into ``part``, resuming what is already there when the server allows.
    ``advice`` ends every error message (what the user can do instead). ``limit``: the most
    bytes the whole file may have; a server that announces or sends more is cut off and its
    bytes removed."""
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = open_url(url, start, advice)
    except _RangeNotSatisfiable as e:
        if e.total == start:
            return _Transfer(0, start, start)  # the earlier attempt had got every byte
        part.unlink()  # the .part is longer than the file now on the server: start over
        start, response = 0, open_url(url, 0, advice)
    with response:
        first, total = _content_range(response.headers.get("Content-Range"))
        if start and response.status == 206 and first == start:
            mode = "ab"
        else:
            # 200 means the server ignored Range and sends everything; a 206 for another
            # range cannot be appended either. Either way the old bytes are dropped.
            start, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        transfer = _Transfer(0, start, total)
        if limit is not None and total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise UserError(f"{url} announces {_human(total)}, {_human_limit(limit)}: not downloaded; {advice}")
        try:
            with open(part, mode) as out, \
                    _progress(label, total or approx_total, start, quiet) as advance:
                transfer.received = _stream(response, out, advance, None if limit is None else limit - start)
        except _TooLarge:
            part.unlink(missing_ok=True)
            raise UserError(f"{url} sent {_human_limit(limit)}: stopped and removed the download; {advice}") from None
        except (OSError, http.client.HTTPException) as e:
            # Reset, timeout, disk full: what arrived stays in the .part for a resume.
            got = part.stat().st_size if part.exists() else 0
            raise UserError(f"download of {url} stopped at {_human(got)} ({e}): run the same "
                            "command again to resume") from None
    return transfer


def check_complete(part: Path, url: str, transfer: _Transfer) -> int:
    """The size against Content-Length: a short file stays for a resume, a long one is removed."""
    size = part.stat().st_size
    if transfer.total is not None and size < transfer.total:
        raise UserError(f"download of {url} stopped at {_human(size)} of "
                        f"{_human(transfer.total)}: run the same command again to resume")
    if transfer.total is not None and size > transfer.total:
        part.unlink()
        raise UserError(f"{url} sent {size} bytes but announced {transfer.total}: removed "
                        f"{part.name}; run the command again to download it afresh")
    return size


def _check_download(part: Path, url: str, transfer: _Transfer, dataset: RemoteDataset) -> int:
    """Size against Content-Length (a short file can be resumed), then the sha256 if known."""
    size = check_complete(part, url, transfer)
    from crd_edge._io import file_sha256
    if dataset.sha256 and file_sha256(part) != dataset.sha256.lower():
        part.unlink()
        raise UserError(f"{url} does not match the known sha256 (corrupt or changed on the "
                        f"server): removed {part.name}; run again, or try another --mirror")
    return size


# ------------------------------------------------------------------------------- extraction


class _UnsafeArchive(Exception):
    """A member that would land outside the destination (absolute, ``..``, link)."""


class _ArchiveBomb(Exception):
    """An archive that expands far beyond what a data set of its size holds."""


#: The data sets are folders of JPEGs, which do not compress: an archive that expands to more
#: than this multiple of its own (or its listed) size, or holds more members, is refused.
MAX_EXPANSION = 8
MAX_MEMBERS = 500_000


def _check_totals(members: int, expanded: int, limit: int) -> None:
    if members > MAX_MEMBERS:
        raise _ArchiveBomb(f"more than {MAX_MEMBERS:,} members")
    if expanded > limit:
        raise _ArchiveBomb(f"expands to more than {_human(limit)}, {MAX_EXPANSION}x its size")


_TAR_FILTER_ERROR = getattr(tarfile, "FilterError", _UnsafeArchive)
# Pythons before 3.10.12 / 3.11.4 have no extraction filters; the checks above still run there.
_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _check_member(name: str, root: Path) -> None:
    posix = PurePosixPath(name.replace("\\", "/"))
    target = (root / posix).resolve()
    if posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", name) \
            or not target.is_relative_to(root):
        raise _UnsafeArchive(name)


def _extract_zip(archive: Path, into: Path, limit: int) -> None:
    root = into.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        # zipfile never writes more than a member's declared size, so the sum is a true bound.
        _check_totals(len(members), sum(info.file_size for info in members), limit)
        for info in members:
            _check_member(info.filename, root)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a Unix symlink entry
                raise _UnsafeArchive(f"{info.filename} (symbolic link)")
        zf.extractall(into)  # reads every member fully, so a bad CRC raises BadZipFile here


def _extract_tar(archive: Path, into: Path, limit: int) -> None:
    """Member by member, in one pass over the (possibly multi-GB) gzip stream, by the same rules
    as a zip: the running totals against the limits, the name (an absolute one is refused, not
    stripped), and no links or special files at all (the data sets hold plain files). The "data"
    filter then also normalises permissions. Whatever was written before a refusal is in a
    temporary folder that the caller deletes."""
    root = into.resolve()
    with tarfile.open(archive, "r:gz") as tf:
        members = expanded = 0
        for member in tf:
            members, expanded = members + 1, expanded + max(member.size, 0)
            _check_totals(members, expanded, limit)
            _check_member(member.name, root)
            if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
                raise _UnsafeArchive(f"{member.name} (link or special file)")
            tf.extract(member, into, **_DATA_FILTER)


def _extract(archive: Path, kind: str, into: Path, shown_name: str, limit: int) -> None:
    """Extract ``archive`` into ``into`` (at most ``limit`` bytes); a corrupt or hostile archive
    is removed, one line."""
    try:
        (_extract_zip if kind == "zip" else _extract_tar)(archive, into, limit)
    except _ArchiveBomb as e:
        archive.unlink(missing_ok=True)
        raise UserError(f"{shown_name} {e}: refused as an archive bomb and removed {archive.name}; "
                        "try another --mirror") from None
    except (_UnsafeArchive, _TAR_FILTER_ERROR) as e:
        archive.unlink(missing_ok=True)
        raise UserError(f"{shown_name} has a member outside its folder ({e}): refused and "
                        f"removed {archive.name}; try another --mirror") from None
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
        archive.unlink(missing_ok=True)
        raise UserError(f"{shown_name} is corrupt or truncated ({e or type(e).__name__}): removed "
                        f"{archive}; run the command again to download it afresh") from None
    except OSError as e:  # disk full, permissions: the archive is fine, keep it for a re-run
        raise UserError(f"cannot extract {shown_name} into {into.parent} ({e}): free space or "
                        f"fix permissions, then run again ({archive.name} is kept)") from None


def _archive_root(extracted: Path) -> Path:
    """The single top folder of the archive (``horse2zebra/``), or the extraction folder."""
    entries = [p for p in extracted.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted


def _install(extracted_root: Path, final: Path) -> None:
    """Rename the new folder into place; a folder being replaced (--force) goes only after."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    extracted_root.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _detect(final: Path, dataset: RemoteDataset, result: DownloadResult) -> None:
    """Fill ``result.layout`` with what ``distill --data`` will see in the folder."""
    from crd_edge.data.datasets import detect_layout  # lazy: imports torch

    try:
        result.layout = detect_layout(final, "train")
    except UserError as e:
        result.notes.append(f"layout not recognised: {e}")
        return
    if result.layout != dataset.layout:
        result.notes.append(f"expected a {dataset.layout} layout, found {result.layout}")


# ------------------------------------------------------------------------------- entry point


def _destination(dest: str | Path) -> Path:
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UserError(f"--out {dest} is a file: give a folder to download into")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def download_dataset(name: str, dest: str | Path = "data", mirror: str | None = None,
                     force: bool = False, quiet: bool = False) -> DownloadResult:
    """Download and extract data set ``name`` into ``dest/<folder>/``; see the module docstring.

    An existing folder is left alone (``skipped``) unless ``force``. Raises ``UserError``
    for unknown names, HTTP and network failures, and corrupt or unsafe archives.
    """
    dataset = find_dataset(name)
    if dataset.manual:
        raise UserError(f"{dataset.key}: {dataset.manual}")
    base = resolve_mirror(mirror)
    url = dataset.url(base)
    dest = _destination(dest)
    final = dest / dataset.folder
    result = DownloadResult(dataset.key, final, url)
    if final.exists() and not force:
        result.skipped = True
        result.notes.append(f"{final} already exists: kept it (use --force to download again)")
        _detect(final, dataset, result)
        return result

    part = dest / f".{dataset.folder}.part"
    limit = int(LISTED_SIZE_SLACK * dataset.approx_bytes) if dataset.approx_bytes else UNLISTED_LIMIT
    transfer = fetch(url, part, dataset.key, dataset.approx_bytes, quiet, limit=limit)
    result.downloaded_bytes, result.resumed_from = transfer.received, transfer.resumed_from
    result.archive_bytes = _check_download(part, url, transfer, dataset)
    if dataset.approx_bytes and not 0.5 < result.archive_bytes / dataset.approx_bytes < 2:
        result.notes.append(f"archive is {_human(result.archive_bytes)}, expected about "
                            f"{_human(dataset.approx_bytes)}")

    extracted = Path(tempfile.mkdtemp(prefix=f".{dataset.folder}.extract-", dir=dest))
    try:
        limit = MAX_EXPANSION * max(result.archive_bytes, dataset.approx_bytes or 0)
        _extract(part, dataset.archive, extracted, f"{dataset.name}.{dataset.archive} from {url}", limit)
        _install(_archive_root(extracted), final)
    finally:
        shutil.rmtree(extracted, ignore_errors=True)
    part.unlink(missing_ok=True)
    _detect(final, dataset, result)
    return result


@dataclass(frozen=True)
class Installed:
    """What ``assets install`` did for one asset or web runtime."""

    name: str
    status: str            # "installed" or "already here"
    path: str
    downloaded_mb: float
