"""Web target: a folder any static web server can serve, with no CDN and no network: the student
as ONNX for onnxruntime-web (WebAssembly, SIMD, threads where the page is cross-origin isolated),
the runtime's own files (installed by ``crd-edge assets install onnxruntime-web``, sha256-pinned,
its licence named beside them), a demo page (``index.html``: camera or a chosen file, input and
output side by side, FPS) and the page crd-edge itself drives to verify and time the model in a
browser (``session.html``, see :mod:`crd_edge.runtime.browser_session`).

fp32 only for now: fp16 and int8 in the browser are neither exported nor measured yet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from crd_edge.export.base import ExportJob, MissingExtra

REWRITES = ("narrow_conv_to_space_to_depth",)  # as the ONNX target: the same graph, the same runtime
RUNTIME = "onnxruntime-web"
PAGE_FILES = ("index.html", "app.js", "session.html", "session.js")
MODEL = "model.onnx"


def runtime_folder() -> Path:
    """The installed runtime's ``dist`` folder, or the one-line error that names how to get it
    (``--target all`` skips the target then, as a missing pip extra)."""
    from crd_edge._assets import WEB_RUNTIMES, web_runtime_files
    folder = web_runtime_files(RUNTIME)
    if folder is None:
        raise MissingExtra(f"the web target needs {WEB_RUNTIMES[RUNTIME].purpose}: {WEB_RUNTIMES[RUNTIME].hint}")
    return folder


def export(job: ExportJob, path: Path) -> dict:
    from crd_edge._assets import WEB_RUNTIMES
    from crd_edge.export import onnx as onnx_target
    runtime, source = WEB_RUNTIMES[RUNTIME], runtime_folder()
    path.mkdir(parents=True)
    details = onnx_target.export(job, path / MODEL)
    (path / "ort").mkdir()
    copied = []
    for member in runtime.files:
        if member.startswith("package/dist/"):
            shutil.copyfile(source / member, path / "ort" / Path(member).name)
            copied.append(Path(member).name)
    (path / "ort" / "NOTICE.txt").write_text(
        f"{runtime.package} {runtime.version}: licence {runtime.licence} (its package.json); "
        f"https://www.npmjs.com/package/{runtime.package}\n")
    pages = Path(__file__).with_name("web_page")
    for name in PAGE_FILES:
        shutil.copyfile(pages / name, path / name)
    (path / "model.json").write_text(json.dumps({"model": MODEL, "height": job.height, "width": job.width,
                                                 "layout": "NCHW", "value_range": [-1, 1]}))
    details["tool_versions"][RUNTIME] = runtime.version
    details["conversion"] = {**details["conversion"], "runtime": f"{runtime.package} {runtime.version} "
                             f"(WebAssembly; files: {', '.join(copied)})", "pages": list(PAGE_FILES)}
    return details
