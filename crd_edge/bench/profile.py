"""``crd-edge profile``: parameters and MACs of a registered architecture or a checkpoint."""

from __future__ import annotations

from pathlib import Path

from crd_edge.bench.macs import count_macs, format_count
from crd_edge.errors import UserError
from crd_edge.models import create_model, list_models, model_entry


def _resolve(model: str):
    if Path(model).is_file() or model.endswith((".pt", ".pth")):
        from crd_edge.training.checkpoint import load_student
        net, ckpt = load_student(model)
        return net, ckpt["student"]["arch"], ckpt["student"]["kwargs"], str(model)
    entry = model_entry(model)
    net = create_model(model)
    return net, model, net.crd_spec["kwargs"], entry.doc


def profile_model(model: str, size: int = 256) -> dict:
    """Params and MACs at ``size`` x ``size`` (1 image) in both conventions."""
    net, arch, kwargs, source = _resolve(model)
    channels = getattr(net, "crd_spec", {}).get("kwargs", {}).get("in_channels", 3)
    try:
        report = count_macs(net, (1, channels, size, size))
    except RuntimeError as exc:
        raise UserError(f"{model} cannot run at --size {size} ({str(exc).splitlines()[0][:100]}); "
                        "try 256") from None
    return {"model": arch, "kwargs": kwargs, "source": source, "size": size, **report.as_dict()}


def render_profile(r: dict) -> str:
    return "\n".join([
        f"{r['model']}  ({r['source']})",
        f"  input         1x3x{r['size']}x{r['size']}",
        f"  params        {r['params']:,}",
        f"  MACs (true)   {format_count(r['true_macs'])}  = convs {format_count(r['conv_macs'])} + norm {format_count(r['norm_ops'])}",
        f"  MACs (paper)  {format_count(r['paper_macs'])}  (torchprofile convention: transposed convs x4)",
    ])


def list_table() -> str:
    rows = []
    for name in list_models():
        entry = model_entry(name)
        rows.append(f"{name:38s} {entry.kind:14s} {entry.doc}")
    return "\n".join(rows)
