"""The ``web-litert`` target: the ``web`` target's folder with the student as a ``.tflite`` file run
by LiteRT.js (XNNPACK compiled to WebAssembly) instead of ONNX in onnxruntime-web. Measured on a
2-core EPYC in Chromium 156, the trained 1.36-GMAC student at 256x256, 2 threads: 59.8 ms p50 against
onnxruntime-web's 84.6 ms. The file is the tflite target's fp32 conversion (litert-torch), so this
target needs crd-edge[tflite] and converts in a child process as that one does."""

from __future__ import annotations

from pathlib import Path

from crd_edge.export.base import ExportDetails, ExportJob
from crd_edge.export.tflite import REWRITES  # noqa: F401 - the same file, the same rewrites
from crd_edge.export.web import SITES, export_site


def export(job: ExportJob, path: Path) -> ExportDetails:
    return export_site(SITES["web-litert"], job, path)
