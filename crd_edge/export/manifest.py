"""manifest.json beside the artifacts: one record per artifact, never silently overwritten.

An artifact is a file (.onnx, .tflite) or a folder (.mlpackage, .openvino); a folder's sha256
is taken over its files' relative paths and contents, so it identifies the model the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from crd_edge.errors import UserError
from crd_edge.models.teachers import sha256_of
from crd_edge.training.run_dir import write_json


def artifact_sha256(path: Path) -> str:
    if path.is_file():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_of(file)}\n".encode())
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
        write_json(self.manifest_path, {"format_version": 1, "artifacts": records})
        return record

    def load(self) -> list[dict]:
        if not self.manifest_path.is_file():
            return []
        try:
            return json.loads(self.manifest_path.read_text()).get("artifacts", [])
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{self.manifest_path}: not a readable manifest; move it away and export again") from None
