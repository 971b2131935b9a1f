"""Installing a web runtime (``crd-edge assets install onnxruntime-web``) from an npm registry.

The package's tarball (``{registry}/{name}/-/{name}-{version}.tgz``, what ``npm install`` reads,
so any npm mirror serves it) is downloaded with the size recorded in :mod:`crd_edge._assets` as
its limit (resumable, with a progress bar) and checked against its recorded sha256. Only the
files the page needs are read out of it, by their exact names (no other member is written, so
no path in the archive can reach outside the asset folder), each checked against its own sha256
in a temporary folder that is renamed into place: the runtime's folder is whole or absent.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from crd_edge._assets import WEB_RUNTIMES, WebRuntime, assets_dir, web_runtime_dir, web_runtime_files
from crd_edge._io import file_sha256
from crd_edge.data.download import Installed, check_complete, fetch
from crd_edge.errors import UserError

__all__ = ["DEFAULT_REGISTRY", "REGISTRY_ENV", "install_web_runtime", "resolve_registry"]

DEFAULT_REGISTRY = "https://registry.npmjs.org"
REGISTRY_ENV = "CRD_EDGE_NPM_REGISTRY"
ADVICE = "check the network or --registry (an npm registry), then run the command again"


def resolve_registry(registry: str | None = None) -> str:
    """The npm registry: ``registry``, else ``$CRD_EDGE_NPM_REGISTRY``, else npm's own."""
    source = "--registry" if registry else REGISTRY_ENV
    value = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).strip()
    if not re.match(r"^https?://[^/\s]+", value):
        raise UserError(f"{source} {value!r} is not an http(s) URL: give an npm registry, e.g. {DEFAULT_REGISTRY}")
    return value.rstrip("/")


def _extract_pinned(tarball: Path, runtime: WebRuntime) -> Path:
    """The runtime's files out of ``tarball`` into a new folder beside the target, each checked,
    then renamed into place."""
    target = web_runtime_dir(runtime)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member, digest in runtime.files.items():
                info = archive.getmember(member)  # KeyError: not in this tarball
                if not info.isfile():
                    raise UserError(f"{tarball.name}: {member} is not a regular file; {ADVICE}")
                out_path = staging / member
                out_path.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                with archive.extractfile(info) as src, open(out_path, "wb") as out:
                    while chunk := src.read(1 << 20):
                        sha.update(chunk)
                        out.write(chunk)
                if sha.hexdigest() != digest:
                    raise UserError(f"{member} in {tarball.name} does not have the sha256 crd-edge records for "
                                    f"{runtime.package}@{runtime.version}: not installed; {ADVICE}")
        if target.exists():  # an earlier copy that failed its check
            shutil.rmtree(target)
        os.replace(staging, target)
        return target
    except KeyError as exc:
        raise UserError(f"{tarball.name} has no {exc.args[0]}: not {runtime.package}@{runtime.version}; "
                        f"{ADVICE}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{tarball.name}: cannot read the tarball ({exc}); {ADVICE}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_web_runtime(name: str, registry: str | None = None, quiet: bool = False) -> Installed:
    """Install the web runtime ``name`` (nothing is downloaded when a verified copy is here)."""
    runtime = WEB_RUNTIMES[name]
    found = web_runtime_files(name)
    if found is not None:
        return Installed(name, "already here", str(found), 0.0)
    url = f"{resolve_registry(registry)}/{runtime.tarball}"
    folder = assets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{runtime.package.replace('/', '+')}-{runtime.version}.tgz.part"  # a scoped name has a /
    transfer = fetch(url, part, f"{name} ({runtime.package}@{runtime.version})", runtime.size, quiet, ADVICE,
                     limit=runtime.size)  # the exact size is known: a byte more is not this file
    check_complete(part, url, transfer)
    if file_sha256(part) != runtime.sha256:
        part.unlink()
        raise UserError(f"{url} does not have the sha256 crd-edge records for {runtime.package}@{runtime.version} "
                        f"(corrupt or changed): removed the download; {ADVICE}")
    try:
        path = _extract_pinned(part, runtime)
    finally:
        part.unlink(missing_ok=True)
    return Installed(name, "installed", str(path), round(transfer.received / 1e6, 1))
