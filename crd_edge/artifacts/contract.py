"""The contract an artifact carries inside itself, so that an app developer who receives only
``student_int8.tflite`` knows how to feed it without ``manifest.json``: input layout and size,
value range, colour order, the pre- and post-processing formulas, role and precision.

Where each format keeps it (what its own tools show):

* ONNX: ``metadata_props``, keys ``crd_edge.<field>`` (Netron lists them);
* TFLite: a ``metadata`` entry named ``crd_edge`` whose buffer is the JSON of the fields
  (written with LiteRT's own flatbuffer tools), beside the standard ``TFLITE_METADATA`` that
  Android's tooling reads (image tensors, normalisation);
* OpenVINO: ``rt_info`` under ``crd_edge`` (``model.get_rt_info(["crd_edge", field])``);
* Core ML: ``user_defined_metadata``, keys ``crd_edge.<field>`` (Xcode's model view).

Every value is a string. The export writes the contract; bench, demo and eval read it back for
an artifact that no manifest lists.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from crd_edge._version import __version__

KEY = "crd_edge"
CONTRACT_VERSION = "1"
DYNAMIC = "dynamic"                        # input_size of a file with dynamic height and width
DYNAMIC_DIMS = ("height", "width")         # the names its input and output dimensions carry


def build_contract(role: str, precision: str, height: int, width: int, source_sha256: str | None,
                   dynamic: bool = False) -> dict[str, str]:
    """The fields every artifact carries; each exporter adds ``layout`` (its own). A file with
    dynamic height and width says ``input_size: dynamic``."""
    return {"contract_version": CONTRACT_VERSION, "role": role, "precision": precision,
            "input_size": DYNAMIC if dynamic else f"{height}x{width}", "value_range": "-1,1", "color_order": "RGB",
            "preprocessing": "x = rgb_uint8 / 127.5 - 1", "postprocessing": "rgb_uint8 = round((y + 1) * 127.5)",
            "source_sha256": source_sha256 or "", "crd_edge_version": __version__}


# ---------------------------------------------------------------------------------- writing


def embed_onnx(path: Path, contract: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if not p.key.startswith(f"{KEY}.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for field, value in contract.items():
        model.metadata_props.add(key=f"{KEY}.{field}", value=value)
    onnx.save(model, str(path))


def embed_tflite(path: Path, contract: dict[str, str]) -> None:
    """The contract as the ``crd_edge`` entry, and the standard ``TFLITE_METADATA`` entry that
    Android's tooling reads (:mod:`crd_edge.artifacts.tflite_metadata`)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from crd_edge.artifacts.tflite_metadata import FIELD_NAME, image_to_image_metadata
    model = flatbuffer_utils.read_model(str(path))
    # the signature's names (image, output: what a signature runner and every other format use),
    # else the tensors' own
    graph, signatures = model.subgraphs[0], model.signatureDefs or []
    pairs = ([signatures[0].inputs[0], signatures[0].outputs[0]] if signatures and signatures[0].inputs
             and signatures[0].outputs else [graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]])
    names = [p.name.decode() if isinstance(p.name, bytes) else str(p.name) for p in pairs]
    entries = {KEY: json.dumps(contract, sort_keys=True).encode(), FIELD_NAME: image_to_image_metadata(contract, *names)}
    model.metadata = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
                      not in entries]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = list(data)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    flatbuffer_utils.write_model(model, str(path))


# ---------------------------------------------------------------------------------- reading


def read_contract(path: str | Path, target: str) -> dict[str, str]:
    """The contract ``path`` (an artifact of ``target``) carries; {} when it has none or its
    format's reader is not installed."""
    import importlib.util

    from crd_edge.artifacts import FORMATS
    kind = FORMATS[target].file_format if target in FORMATS else target  # TensorRT's graph is read as ONNX
    reader, package = {"onnx": (_read_onnx, "onnx"), "tflite": (_read_tflite, "ai_edge_litert"),
                       "openvino": (_read_openvino, None), "coreml": (_read_coreml, "coremltools"),
                       "web": (_read_web, None)}.get(kind, (None, None))
    if reader is None or (package is not None and importlib.util.find_spec(package) is None):
        return {}
    try:
        return reader(Path(path))
    except Exception:  # a damaged or foreign file: no contract; opening it gives its own one-line error
        return {}


def _read_web(folder: Path) -> dict[str, str]:
    """A web folder's model file, read by its own format's reader (model.json names it)."""
    import importlib.util
    import json
    model = folder / json.loads((folder / "model.json").read_text())["model"]
    if model.suffix == ".onnx":
        return _read_onnx(model)
    return _read_tflite(model) if importlib.util.find_spec("ai_edge_litert") else {}


def _read_onnx(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    prefix = f"{KEY}."
    return {p.key[len(prefix):]: p.value for p in model.metadata_props if p.key.startswith(prefix)}


def _read_tflite(path: Path) -> dict[str, str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == KEY:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


def _read_openvino(path: Path) -> dict[str, str]:
    xml = path / "model.xml" if path.is_dir() else path
    node = ET.parse(xml).getroot().find(f"rt_info/{KEY}")
    return {} if node is None else {child.tag: child.get("value", "") for child in node}


def _read_coreml(path: Path) -> dict[str, str]:
    from coremltools.models.utils import load_spec

    prefix = f"{KEY}."
    user = load_spec(str(path)).description.metadata.userDefined
    return {k[len(prefix):]: v for k, v in user.items() if k.startswith(prefix)}


def record_from_contract(target: str, contract: dict[str, str]) -> dict:
    """A manifest-like record built from an embedded contract (what commands read when no
    manifest lists the artifact): target, precision, layout, input shape, value range."""
    if not contract:
        return {}
    if contract["input_size"] == DYNAMIC:
        height, width = DYNAMIC_DIMS
    else:
        height, width = (int(v) for v in contract["input_size"].split("x"))
    nhwc = contract.get("layout") == "NHWC"
    return {"target": target, "precision": contract.get("precision", "fp32"), "layout": contract.get("layout"),
            "input": {"shape": [1, height, width, 3] if nhwc else [1, 3, height, width]},
            "value_range": [float(v) for v in contract.get("value_range", "-1,1").split(",")],
            "role": contract.get("role"), "contract": contract}
