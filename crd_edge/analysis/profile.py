"""``crd-edge profile``: parameters, MACs and activation memory of a registered architecture,
a checkpoint, or an exported ONNX file (counted from its graph)."""

from __future__ import annotations

from pathlib import Path

from crd_edge.analysis.macs import count_macs, format_count
from crd_edge.artifacts import FORMATS, target_of
from crd_edge.errors import UserError
from crd_edge.models import create_model, list_models, model_entry


def _resolve(model: str):
    if Path(model).is_file() or target_of(model) == "torch":
        from crd_edge.checkpoint import load_student
        net, ckpt = load_student(model)
        return net, ckpt["student"]["arch"], ckpt["student"]["kwargs"], str(model)
    entry = model_entry(model)
    net = create_model(model)
    return net, model, net.crd_spec["kwargs"], entry.doc


def profile_model(model: str, size: int = 256) -> dict:
    """Params, MACs in both conventions and activation memory at ``size`` x ``size`` (1 image)."""
    if target_of(model) and FORMATS[target_of(model)].file_format == "onnx":  # TensorRT's graph is ONNX too
        return profile_onnx(model, size)
    from crd_edge.analysis.memory import count_activations
    net, arch, kwargs, source = _resolve(model)
    channels = getattr(net, "crd_spec", {}).get("kwargs", {}).get("in_channels", 3)
    try:
        report = count_macs(net, (1, channels, size, size))
        memory = count_activations(net, (1, channels, size, size))
    except RuntimeError as exc:
        raise UserError(f"{model} cannot run at --size {size} ({str(exc).splitlines()[0][:100]}); "
                        "try 256") from None
    return {"model": arch, "kwargs": kwargs, "source": source, "size": size, **report.as_dict(),
            **memory.as_dict()}


def profile_onnx(path: str | Path, size: int = 256) -> dict:
    """The same figures read from an ONNX graph; ``size`` only fills dynamic input dimensions."""
    from crd_edge.analysis.onnx_counts import count_onnx
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    counts = count_onnx(path, size)
    height, width = counts.macs.input_shape[-2:]
    return {"model": path.name, "kwargs": {}, "source": f"ONNX graph {path}",
            "size": height if height == width else f"{height}x{width}", **counts.as_dict()}


def render_profile(r: dict) -> str:
    shape = "x".join(map(str, r.get("input_shape") or (1, 3, r["size"], r["size"])))
    onnx = "graph_params" in r
    lines = [
        f"{r['model']}  ({r['source']})",
        f"  input         {shape}",
        f"  params        {r['params']:,}",
        f"  MACs (true)   {format_count(r['true_macs'])}  = convs {format_count(r['conv_macs'])} + norm {format_count(r['norm_ops'])}",
        f"  MACs (paper)  {format_count(r['paper_macs'])}  (torchprofile convention: transposed convs x4)",
        f"  activations   peak {format_count(r['act_peak_bytes'], 'B')}, total {format_count(r['act_total_bytes'], 'B')}  "
        f"({'the graph dtypes' if onnx else 'fp32'}, batch 1; input {format_count(r['input_bytes'], 'B')} "
        "and weights not included)",
    ]
    if onnx and r.get("folded"):
        lines.append(f"  as stored     params {r['graph_params']:,}, conv MACs {format_count(r['graph_conv_macs'])}  "
                     f"(export rewrites counted above as the layers they replace: "
                     f"{', '.join(sorted({f.split(':')[0] for f in r['folded']}))})")
    return "\n".join(lines)


def list_table() -> str:
    rows = []
    for name in list_models():
        entry = model_entry(name)
        rows.append(f"{name:38s} {entry.kind:14s} {entry.doc}")
    return "\n".join(rows)
