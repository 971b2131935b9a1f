"""File helpers at the bottom of the package: atomic writes (text, JSON, JSON lines, torch),
sha256 with a per-process cache, the cache folder and the figure writer. No crd_edge imports;
torch and matplotlib only inside the functions that need them."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

from crd_edge.errors import UserError

# Below this much free space, a failed write is taken to be the disk filling up: torch's zip
# writer reports ENOSPC as a RuntimeError ("enforce fail ... unexpected pos"), not an OSError.
_NEARLY_FULL = 1 << 20
TMP_SUFFIX = ".tmp"  # of the atomic writers' temporary files: .<name>.<random>.tmp


class DiskFullError(UserError):
    """A write failed because its file system is full: names the folder and the bytes needed."""

    def __init__(self, folder: Path, needed: int | None = None) -> None:
        free = shutil.disk_usage(folder).free if folder.exists() else 0
        need = f"; it needs more than {needed:,} bytes" if needed else ""
        super().__init__(f"no space left in {folder} ({free:,} bytes free{need}): free some space or "
                         "choose another folder, then run the command again")

    def __reduce__(self):  # crosses process boundaries (export's converter child) as its message
        return _disk_full_from_message, (str(self),)


def _disk_full_from_message(message: str) -> DiskFullError:
    error = DiskFullError.__new__(DiskFullError)
    UserError.__init__(error, message)
    return error


def is_nearly_full(folder: Path) -> bool:
    """Whether ``folder``'s file system has (almost) no space left: the likely cause of a
    failure that does not say ENOSPC itself."""
    return shutil.disk_usage(folder).free < _NEARLY_FULL


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, RuntimeError) and is_nearly_full(folder)


def require_free_space(folder: str | Path, needed: int) -> None:
    """Refuse, before any work, a folder (or the nearest existing folder above it) whose file
    system has less than ``needed`` bytes free: a run that fills the disk at its last write
    loses all the work before it."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if shutil.disk_usage(probe).free < needed:
        raise DiskFullError(probe, needed)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/crd-edge`` (default ``~/.cache/crd-edge``): crd-edge's own cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crd-edge"


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """Check, before any work and without writing anything, that ``path`` is a folder this
    process can write into or create; else one line naming the option and the fix."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: a file is there, not a folder; choose a folder")
    existing = path
    while not existing.exists():  # the nearest folder that exists is where it would be created
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a folder; choose another place")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {existing} is not writable; choose another place")
    return path


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file), then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")  # format given below: the suffix need not say png
    fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def save_png(image, path: str | Path) -> Path:
    """Write a uint8 HxWx3 array as PNG atomically (grids and side-by-side pictures)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        tmp.replace(path)
    except BaseException as exc:
        _give_up(tmp, exc, None)
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place: a reader or a
    crash never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        _give_up(Path(tmp), exc, len(text.encode()))


def atomic_write_with(path: str | Path, write: Callable[[Any], None]) -> None:
    """``write(binary file)`` into a unique temporary file beside ``path``, then rename it into
    place (numpy's ``np.save``/``np.savez`` and the like): concurrent writers of the same file
    (two runs filling one shared cache) never collide on a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        _give_up(Path(tmp), exc, None)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line in a single write; a write that fails part-way (a full disk) is
    cut back off, so the file never ends in a torn line."""
    path = Path(path)
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, "short write", str(path))
        except OSError as exc:
            os.ftruncate(fd, size)
            if _is_disk_full(exc, path.parent):
                raise DiskFullError(path.parent, len(line)) from exc
            raise
    finally:
        os.close(fd)


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file: the one reader of every results, metrics and sweep
    file. A line that does not parse is skipped, not fatal: a last line torn by a crash (of an
    older writer or another program) silently, since :func:`append_jsonl` appends after it; any
    other with a warning naming the lines, as that is damage rather than a crash."""
    records, bad = [], []
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad.append(number)
    damaged = [n for n in bad if n != len(lines)]
    if damaged:
        warnings.warn(f"{path}: skipped {len(damaged)} line(s) that are not JSON (line "
                      f"{', '.join(map(str, damaged[:5]))}{', ...' if len(damaged) > 5 else ''})", stacklevel=2)
    return records


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as exc:
        _give_up(Path(tmp), exc, None)


def _give_up(tmp: Path, exc: BaseException, needed: int | None) -> None:
    """Remove a temporary file that will never be renamed into place, then re-raise; a full disk
    becomes a DiskFullError naming the folder."""
    written = tmp.stat().st_size if tmp.exists() else 0
    full = _is_disk_full(exc, tmp.parent)  # before the unlink frees what was written
    tmp.unlink(missing_ok=True)
    if full:
        raise DiskFullError(tmp.parent, needed or written) from exc
    raise exc


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files of atomic writes that a killed process left in ``folder``
    (``.<name>.<random>.tmp``); returns how many. Call it only where no other writer is active."""
    removed = 0
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


# Per-process cache keyed by (resolved path, size, mtime): the VGG ONNX file is 65 MB, and the
# teacher, the manifest and the reports all hash the same files.
_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, cached per (path, size, mtime) within the process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]
