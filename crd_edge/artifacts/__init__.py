"""Artifacts: the format table, the manifest record, and the one reader and writer of
``manifest.json``. Export writes through here; bench, demo and eval find artifacts through here.

An artifact is a file (.onnx, .tflite) or a folder (.mlpackage, .openvino); a folder's sha256
is taken over its files' relative paths and contents, so it identifies the model the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from crd_edge._io import file_sha256, remove_stale_temporaries, write_json
from crd_edge.errors import UserError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Format:
    """One row of the format table: everything any command needs to know about a target."""

    target: str                    # the --target name and the manifest's "target"
    suffixes: tuple[str, ...]      # the first is what export writes
    precisions: tuple[str, ...]    # what export writes, fp32 first (empty: not an export target)
    exportable: bool               # crd_edge.export converts to it (its module: export.EXPORTERS)
    session: bool                  # crd_edge.runtime has a session that runs it (runtime.SESSIONS)
    runtime: str | None            # the runtime's name (demo --runtime, bench rows)
    extra: str | None              # pip extra providing the backend: pip install 'crd-edge[EXTRA]'
    not_local: str | None = None   # why it cannot run on this machine's CPU (None: it can)
    verifier: str = "session"      # "session": run it and compare with torch; else the exporter's verify()
    isolated: bool = False         # convert in a child process: its converter can abort the process
    graph: str = ""                # the file format underneath (TensorRT's graph is ONNX); "" = target
    bench_on: tuple[str, ...] = ("local", "ssh")  # the bench runners that time it (bench --on)
    # Files built from the artifact on the device itself, which the device's own tool also runs
    # (TensorRT engines: trtexec --loadEngine); the first is what crd-edge names them.
    device_suffixes: tuple[str, ...] = ()
    # Where its runtime stands when a folder is opened with --runtime auto (lower first; None:
    # never picked): the fastest fp32 runtime on a CPU in our benchmarks (OpenVINO 12.5 ms,
    # onnxruntime 28 ms, LiteRT 35 ms for the student at 256x256 on 2 cores).
    auto_rank: int | None = None
    # Exported with dynamic height and width (``export --size dynamic``): one file for every
    # camera size. The others are written at stated sizes (``--size 480x640,720x1280``).
    dynamic_size: bool = False

    @property
    def file_format(self) -> str:
        """What reads, runs and counts the file: ``onnx`` for ONNX and TensorRT's graph."""
        return self.graph or self.target

    @property
    def suffix(self) -> str:
        return self.suffixes[0]


# Order of --target all: the fastest to convert first, so a slow backend never hides the rest.
FORMATS: dict[str, Format] = {f.target: f for f in (
    Format("onnx", (".onnx",), ("fp32", "fp16", "int8"), True, True, "onnxruntime", None, auto_rank=1,
           dynamic_size=True),
    Format("openvino", (".openvino", ".xml"), ("fp32", "fp16", "int8"), True, True, "openvino", "openvino",
           auto_rank=0, dynamic_size=True),
    Format("tflite", (".tflite",), ("fp32", "fp16", "int8", "int8-dynamic", "int8-weight"), True, True,
           "litert", "tflite", isolated=True, bench_on=("local", "ssh", "adb"), auto_rank=2),
    Format("coreml", (".mlpackage",), ("fp32", "fp16", "int8"), True, True, "coreml", "coreml",
           not_local="Core ML runs only on macOS", verifier="spec", bench_on=()),
    # The graph handed to TensorRT: building an engine needs crd-edge[tensorrt] and a GPU; on a CPU
    # it is the ONNX file again (its onnx row already measures that).
    Format("tensorrt", (".trt.onnx",), ("fp32", "fp16", "int8"), True, False, "tensorrt", None,
           not_local="TensorRT-ready graph: bench it on the device (--on ssh:HOST runs trtexec there); "
                     "locally it equals the onnx row", verifier="graph", graph="onnx", bench_on=("ssh",),
           device_suffixes=(".engine", ".plan")),
    # A folder for any static web server: the ONNX student, onnxruntime-web's WebAssembly files
    # (`crd-edge assets install onnxruntime-web`) and its pages; it runs here in headless Chromium
    # and is timed there, inside the page (bench --on browser).
    Format("web", (".web",), ("fp32",), True, True, "onnxruntime-web", None, bench_on=("browser",),
           dynamic_size=True),
    # The same site with the .tflite file in LiteRT.js (`crd-edge assets install litertjs`): it
    # runs through the same browser session as any web folder.
    Format("web-litert", (".litert.web",), ("fp32",), True, True, "litert.js", "tflite", isolated=True,
           graph="web", bench_on=("browser",)),
    Format("torch", (".pt", ".pth"), (), False, True, "torch", None),
)}
EXPORT_TARGETS = tuple(t for t, f in FORMATS.items() if f.exportable)
STANDARD_PRECISIONS = ("fp32", "fp16", "int8")  # what --target all writes for each target


def format_of(path: str | Path) -> Format | None:
    """The format of ``path`` by its suffix (``.trt.onnx`` before ``.onnx``); None if unknown."""
    name = Path(path).name.lower()
    matches = [(len(s), f) for f in FORMATS.values() for s in f.suffixes if name.endswith(s)]
    return max(matches, key=lambda m: m[0])[1] if matches else None


def target_of(path: str | Path) -> str | None:
    """The format-table target of ``path`` by its suffix; None if unknown."""
    fmt = format_of(path)
    return fmt.target if fmt is not None else None


def all_suffixes() -> list[str]:
    return [s for f in FORMATS.values() for s in f.suffixes]


@dataclass(frozen=True)
class Verification:
    """How an artifact compared with its torch original on the verification photos (its
    manifest record's ``verification``): ``status`` passed, failed, spec-verified, or changed
    since export; None where no export verified it."""

    status: str | None = None
    psnr_db_min: float | None = None
    max_abs_err: float | None = None
    threshold_db: float | None = None

    @classmethod
    def of(cls, record: dict) -> Verification:
        v = record.get("verification") or {}
        return cls(v.get("status"), v.get("psnr_db_min"), v.get("max_abs_err"), v.get("threshold_db"))


@dataclass
class Artifact:
    """A model file or folder, with its manifest record when one lists it. The record is the
    manifest's JSON as export wrote it; readers in other layers use the typed views below."""

    path: Path
    role: str                       # "student" | "teacher" | file stem
    target: str                     # a FORMATS key
    precision: str
    record: dict = field(default_factory=dict)   # the manifest record, when there is one

    @property
    def format(self) -> Format:
        return FORMATS[self.target]

    @property
    def input_hw(self) -> tuple[int, int] | None:
        return record_input_hw(self.record)

    @property
    def verification(self) -> Verification:
        return Verification.of(self.record)

    @property
    def source_architecture(self) -> tuple[str | None, dict]:
        """(registered architecture, its constructor arguments) of the model exported, where the
        record names one."""
        source = self.record.get("source") or {}
        return source.get("arch"), dict(source.get("kwargs") or {})

    @property
    def changed(self) -> bool:
        """Edited or replaced since export: its recorded verification describes another file."""
        return bool(self.record.get("changed"))


def read_manifest(path: str | Path) -> list[dict]:
    """The records of ``manifest.json`` (the file, or the folder holding it); a missing file
    is an empty list, an unreadable one a one-line error."""
    path = Path(path)
    manifest = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest.is_file():
        return []
    try:
        data = json.loads(manifest.read_text())
        records = data.get("artifacts", [])
        if not isinstance(records, list) or not all(isinstance(r, dict) and "path" in r for r in records):
            raise ValueError
    except (ValueError, AttributeError, OSError):
        raise UserError(f"{manifest}: not a readable manifest; move it away and export again") from None
    return records


def manifest_record(path: str | Path) -> dict:
    """The record of artifact ``path`` in the manifest.json beside it, checked against the file
    (``checked_record``); {} when there is none (no manifest, an unreadable one, or the file is
    not listed)."""
    path = Path(path)
    try:
        records = read_manifest(path.parent / MANIFEST_NAME)
    except UserError:
        return {}
    return checked_record(path, next((r for r in records if r.get("path") == path.name), {}))


CHANGED = "changed since export"


def checked_record(path: Path, record: dict) -> dict:
    """``record`` while the artifact still has the sha256 it was exported with. Otherwise the file
    was edited or replaced after export, and the record's verification describes another file:
    a copy whose verification says so, marked ``changed`` (commands warn or flag it)."""
    expected = record.get("sha256")
    if not expected or artifact_sha256(path) == expected:
        return record
    return {**record, "verification": {"status": CHANGED}, "changed": True}


def record_input_hw(record: dict) -> tuple[int, int] | None:
    """(H, W) from a manifest record (remote tools such as benchmark_model do not report it);
    None where it records none or dynamic dimensions (names, not numbers)."""
    shape = (record.get("input") or {}).get("shape")
    if not shape:
        return None
    hw = tuple(shape[1:3]) if record.get("layout") == "NHWC" else tuple(shape[2:4])
    return hw if all(isinstance(d, int) for d in hw) else None


def find_artifacts(source: str | Path, role: str | None = None) -> list[Artifact]:
    """The artifacts behind ``source``: a manifest.json, an export folder, one artifact (file or
    ``.openvino``/``.mlpackage`` folder) or a crd-edge checkpoint."""
    path = Path(source)
    manifest = path / MANIFEST_NAME if path.is_dir() and format_of(path) is None else path
    if manifest.name == MANIFEST_NAME:
        if not manifest.is_file():
            raise UserError(f"{source}: no manifest.json there; run `crd-edge export` first or pass an artifact")
        found = [Artifact(manifest.parent / r["path"], role or r["path"].split("_")[0], r.get("target", "unknown"),
                          r.get("precision", "fp32"), checked_record(manifest.parent / r["path"], r))
                 for r in read_manifest(manifest) if (manifest.parent / r["path"]).exists()]
        if not found:
            raise UserError(f"{manifest}: lists no artifact that exists next to it")
        return found
    if not path.exists():
        raise UserError(f"{source}: no such artifact, export folder or checkpoint")
    fmt = format_of(path)
    if fmt is None:
        raise UserError(f"{source}: not a model artifact ({', '.join(all_suffixes())})")
    record = manifest_record(path) or embedded_record(path, fmt.target)
    default_role = record.get("role") or ("student" if fmt.target == "torch" else path.name.split("_")[0])
    return [Artifact(path, role or default_role, record.get("target", fmt.target), record.get("precision", "fp32"),
                     record)]


def embedded_record(path: Path, target: str) -> dict:
    """A record from the contract the artifact carries (``crd_edge.artifacts.contract``), for an
    artifact that no manifest lists; {} when it carries none."""
    from crd_edge.artifacts.contract import read_contract, record_from_contract
    return record_from_contract(target, read_contract(path, target))


def artifact_sha256(path: Path) -> str:
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def artifact_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class ArtifactWriter:
    """Artifacts are written under a temporary name and moved into place only when the final
    one is absent, identical, or ``force`` is set; the manifest is rewritten atomically."""

    def __init__(self, out_dir: Path, force: bool = False) -> None:
        self.out_dir, self.force = Path(out_dir), force
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.out_dir / "manifest.json"
        # What a killed export left behind (one export writes a folder at a time). An artifact
        # moved aside by a commit that was killed before the new one took its place goes back.
        for aside in self.out_dir.glob(".replaced-*"):
            final = self.out_dir / aside.name.removeprefix(".replaced-")
            if final.exists():
                remove(aside)
            else:
                os.replace(aside, final)
        for stale in self.out_dir.glob(".partial-*"):
            remove(stale)
        remove_stale_temporaries(self.out_dir)

    def reserve(self, name: str) -> Path:
        tmp = self.out_dir / f".partial-{name}"  # keeps the suffix: the runtime layer verifies it
        remove(tmp)  # left over from an interrupted export
        return tmp

    def check_free(self, name: str, digest: str) -> None:
        final = self.out_dir / name
        if final.exists() and not self.force and artifact_sha256(final) != digest:
            raise UserError(f"{final} exists and holds a different model: pass --force to replace it "
                            "or --out to write elsewhere")

    def commit(self, tmp: Path, record: dict) -> dict:
        final = self.out_dir / tmp.name.removeprefix(".partial-")
        digest = artifact_sha256(tmp)
        try:
            self.check_free(final.name, digest)
        except UserError:
            remove(tmp)
            raise
        if final.is_dir():  # rename() cannot replace a non-empty folder: move it aside first
            aside = self.out_dir / f".replaced-{final.name}"
            remove(aside)
            os.replace(final, aside)
            os.replace(tmp, final)
            remove(aside)
        else:
            os.replace(tmp, final)
        record = {"path": final.name, "sha256": digest, "bytes": artifact_bytes(final), **record}
        records = [r for r in self.load() if r.get("path") != final.name] + [record]
        write_json(self.manifest_path, {"format_version": MANIFEST_VERSION, "artifacts": records})
        return record

    def load(self) -> list[dict]:
        return read_manifest(self.manifest_path)
