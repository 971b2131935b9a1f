"""Web targets: a folder any static web server can serve, with no CDN and no network: the student,
a JavaScript runtime's own files (installed by ``crd-edge assets install``, sha256-pinned, each
licence named beside them), a demo page (``index.html``: camera or a chosen file, input and
output side by side, FPS) and the page crd-edge itself drives to verify and time the model in a
browser (``session.html``, see :mod:`crd_edge.runtime.browser_session`).

Two runtimes, one page set: ``web`` runs the ONNX graph in onnxruntime-web, ``web-litert`` the
``.tflite`` file in LiteRT.js (XNNPACK in WebAssembly, measured faster here; it needs the tflite
converter). Each ships a ``runtime.js`` with the same small interface, which the pages import.

fp32 only: the fp16 and int8 files of the other targets were no faster in either runtime's
WebAssembly (LiteRT.js: fp16 389 ms, int8 65 ms, fp32 55 ms; onnxruntime-web 86.0, 87.7 and 84.4 ms;
the trained student at 256x256 on 2 cores)."""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from crd_edge.export.base import ExportDetails, ExportJob, MissingExtra

REWRITES = ("narrow_conv_to_space_to_depth",)  # as the ONNX target: the same graph, the same runtime
PAGE_FILES = ("index.html", "app.js", "session.html", "session.js")


@dataclass(frozen=True)
class Site:
    """What one web target puts in its folder."""

    runtime: str      # a crd_edge._assets.WEB_RUNTIMES name (its requirements are copied too)
    folder: str       # where the runtime's files go, under the site
    model: str        # the model's file name in the site
    converter: str    # the export module that writes the model file
    adapter: str      # the web_page/ script copied to runtime.js


SITES = {"web": Site("onnxruntime-web", "ort", "model.onnx", "crd_edge.export.onnx", "runtime_ort.js"),
         "web-litert": Site("litertjs", "litert", "model.tflite", "crd_edge.export.tflite", "runtime_litert.js")}


def runtime_folders(site: Site) -> dict[str, Path]:
    """{runtime name: its installed folder} for the site's runtime and what it imports, or the
    one-line error that names how to get them (``--target all`` skips the target then)."""
    from crd_edge._assets import WEB_RUNTIMES, web_runtime_files
    found = {}
    for name in (*WEB_RUNTIMES[site.runtime].requires, site.runtime):
        folder = web_runtime_files(name)
        if folder is None:
            runtime = WEB_RUNTIMES[site.runtime]
            raise MissingExtra(f"this target needs {runtime.purpose}: {runtime.hint}")
        found[name] = folder
    return found


def export(job: ExportJob, path: Path) -> ExportDetails:
    return export_site(SITES["web"], job, path)


def export_site(site: Site, job: ExportJob, path: Path) -> ExportDetails:
    """The model (written by the site's converter), the runtime's files and the pages."""
    from crd_edge._assets import WEB_RUNTIMES
    folders = runtime_folders(site)  # before any conversion: a missing runtime costs nothing
    path.mkdir(parents=True)
    details = importlib.import_module(site.converter).export(job, path / site.model)
    copied = []
    for name, source in folders.items():
        runtime = WEB_RUNTIMES[name]
        # the package's own layout under the site's folder (package/dist/x.js -> ort/dist/x.js),
        # in a folder of its own where the runtime comes in several (litert/core, litert/wasm-utils)
        base = path / site.folder / (runtime.package.rsplit("/", 1)[-1] if len(folders) > 1 else "")
        for member in runtime.files:
            if member != "package/package.json":
                target = base / member.removeprefix("package/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / member, target)
                copied.append(target.relative_to(path).as_posix())
        (base / "NOTICE.txt").write_text(f"{runtime.package} {runtime.version}: licence {runtime.licence} (its "
                                         f"package.json); https://www.npmjs.com/package/{runtime.package}\n")
    pages = Path(__file__).with_name("web_page")
    for name in PAGE_FILES:
        shutil.copyfile(pages / name, path / name)
    shutil.copyfile(pages / site.adapter, path / "runtime.js")
    runtime = WEB_RUNTIMES[site.runtime]
    (path / "model.json").write_text(json.dumps({
        "model": site.model, "height": job.height, "width": job.width, "dynamic": job.dynamic, "layout": "NCHW",
        "model_layout": details.layout, "value_range": [-1, 1], "runtime": runtime.package,
        "runtime_version": runtime.version}))
    conversion = {**details.conversion, "runtime": f"{runtime.package} {runtime.version} "
                  f"(WebAssembly; files: {', '.join(copied)})", "pages": [*PAGE_FILES, "runtime.js"]}
    # The folder's interface is the page's: NCHW float32 in [-1, 1], whatever the file inside takes.
    return replace(details, layout="NCHW", tool_versions={**details.tool_versions, site.runtime: runtime.version},
                   conversion=conversion)
