"""manifest.json beside the artifacts: one record per file, never silently overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

from crd_edge.errors import UserError
from crd_edge.models.teachers import sha256_of
from crd_edge.training.run_dir import write_json


class ArtifactWriter:
    """Artifacts are written under a temporary name and renamed into place only when the
    final file is absent, identical, or ``force`` is set; the manifest is rewritten atomically."""

    def __init__(self, out_dir: Path, force: bool = False) -> None:
        self.out_dir, self.force = Path(out_dir), force
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.out_dir / "manifest.json"

    def reserve(self, name: str) -> Path:
        return self.out_dir / f".partial-{name}"  # keeps the suffix: the runtime layer verifies it

    def commit(self, tmp: Path, record: dict) -> dict:
        final = self.out_dir / tmp.name.removeprefix(".partial-")
        digest = sha256_of(tmp)
        if final.exists() and not self.force and sha256_of(final) != digest:
            tmp.unlink()
            raise UserError(f"{final} exists and holds a different model: pass --force to replace it "
                            "or --out to write elsewhere")
        os.replace(tmp, final)
        record = {"path": final.name, "sha256": digest, "bytes": final.stat().st_size, **record}
        records = self.load()
        records = [r for r in records if r.get("path") != final.name] + [record]
        write_json(self.manifest_path, {"format_version": 1, "artifacts": records})
        return record

    def load(self) -> list[dict]:
        if not self.manifest_path.is_file():
            return []
        try:
            return json.loads(self.manifest_path.read_text()).get("artifacts", [])
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{self.manifest_path}: not a readable manifest; move it away and export again") from None
