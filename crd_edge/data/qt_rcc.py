"""Read files out of Qt binary resource files (``.rcc``), with the standard library only.

Qt applications ship images inside ``.rcc`` files (the format ``rcc -binary`` writes; the
GCompris photos are stored this way). No maintained Python package reads them without Qt, and
the format is small: a header, a tree of fixed-size nodes, a table of names and a table of
data blobs (optionally zlib-compressed, the ``qCompress`` layout). Documented in Qt's
``src/corelib/io/qresource.cpp`` and ``src/tools/rcc/rcc.cpp``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RccError", "read_rcc", "iter_rcc"]

_COMPRESSED, _DIRECTORY, _ZSTD = 0x01, 0x02, 0x04


class RccError(ValueError):
    """The file is not a Qt resource file this reader understands."""


def iter_rcc(data: bytes, want=lambda path: True) -> Iterator[tuple[str, bytes]]:
    """Yield ``(path, contents)`` of every file in the resource blob whose path ``want`` accepts.

    Paths start with ``/``. Zstandard-compressed entries (a Qt 6 option) are skipped: they
    need a third-party decompressor and none of the files this project reads uses them.
    """
    if data[:4] != b"qres":
        raise RccError("missing 'qres' magic")
    version, tree_off, data_off, names_off = struct.unpack(">IIII", data[4:20])
    if version not in (1, 2, 3):
        raise RccError(f"unsupported rcc format version {version}")
    node_size = 14 if version == 1 else 22  # v2 added an 8-byte last-modified stamp

    def name_at(offset: int) -> str:
        start = names_off + offset
        (length,) = struct.unpack(">H", data[start:start + 2])
        return data[start + 6:start + 6 + 2 * length].decode("utf-16-be")

    def node(index: int) -> tuple[int, int, int, int]:
        base = tree_off + index * node_size
        name_offset, flags = struct.unpack(">IH", data[base:base + 6])
        a, b = struct.unpack(">II", data[base + 6:base + 14])
        return name_offset, flags, a, b

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        _, flags, count, first = node(index)
        for child in range(first, first + count):
            name_offset, child_flags, _, data_offset = node(child)
            path = f"{prefix}/{name_at(name_offset)}"
            if child_flags & _DIRECTORY:
                yield from walk(child, path)
                continue
            if not want(path) or child_flags & _ZSTD:
                continue
            start = data_off + data_offset
            (size,) = struct.unpack(">I", data[start:start + 4])
            blob = data[start + 4:start + 4 + size]
            if child_flags & _COMPRESSED:
                blob = zlib.decompress(blob[4:])  # qCompress: 4-byte length, then a zlib stream
            yield path, blob

    if len(data) < max(tree_off, data_off, names_off):
        raise RccError("truncated file")
    yield from walk(0, "")


def read_rcc(path: str | Path, want=lambda p: True) -> dict[str, bytes]:
    """All files of one ``.rcc`` file that ``want`` accepts, as ``{path: bytes}``."""
    path = Path(path)
    try:
        return dict(iter_rcc(path.read_bytes(), want))
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise RccError(f"{path}: corrupt resource file ({exc})") from None
