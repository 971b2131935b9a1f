"""``crd-edge export``: a checkpoint or teacher -> verified artifacts + manifest.json
(docs/design.md).

The loop is :func:`crd_edge.export.run.export`; this module holds what the CLI and the
pipeline check before it runs (targets, precisions, sizes) and the result table.
"""

from __future__ import annotations

import difflib
import importlib
import re
from types import ModuleType

from crd_edge.artifacts import EXPORT_TARGETS, FORMATS, STANDARD_PRECISIONS
from crd_edge.errors import UserError



# The module that converts to each export target (the format table lists the targets).
EXPORTERS = {"onnx": "crd_edge.export.onnx", "openvino": "crd_edge.export.openvino",
             "tflite": "crd_edge.export.tflite", "coreml": "crd_edge.export.coreml",
             "tensorrt": "crd_edge.export.tensorrt", "web": "crd_edge.export.web",
             "web-litert": "crd_edge.export.web_litert"}


def check_target(name: str) -> None:
    if name not in EXPORT_TARGETS:
        close = difflib.get_close_matches(name, [*EXPORT_TARGETS, "all"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"--target {name}: unknown target{hint}; choose from {', '.join(EXPORT_TARGETS)}, all")


def target_module(name: str) -> ModuleType:
    check_target(name)
    return importlib.import_module(EXPORTERS[name])


def parse_size(text: str | int | None, default: tuple[int, int] | None) -> tuple[int, int]:
    """``256`` or ``256x384`` (height x width), checked by the one size rule
    (:func:`crd_edge.models.registry.check_size`; the model's own stride is checked once it is loaded)."""
    if text is None:
        return default or (256, 256)
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", str(text).strip().lower())
    if not match:
        raise UserError(f"--size {text}: expected N or HxW, e.g. 256 or 256x384")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    from crd_edge.models.registry import check_size
    check_size(None, None, height, width)
    return height, width


def parse_sizes(text: str | int | None, default: tuple[int, int] | None) -> list[tuple[int, int]]:
    """One or more sizes, comma-separated (``256,480x640,720x1280``: what cameras produce,
    height x width), each checked as :func:`parse_size` does; duplicates dropped, order kept."""
    if text is None or str(text).strip() == "":
        return [parse_size(None, default)]
    sizes = [parse_size(part, default) for part in str(text).split(",") if part.strip()]
    return list(dict.fromkeys(sizes)) or [parse_size(None, default)]


def plan(targets: list[str], precisions: list[str] | None) -> list[tuple[str, str]]:
    """(target, precision) pairs. ``all`` expands to every target; with no --precision a named
    target gets fp32 and ``all`` the standard precisions each target has. An explicit precision a named target lacks is an error."""
    names = list(EXPORT_TARGETS) if "all" in targets else list(dict.fromkeys(targets))
    pairs = []
    for name in names:
        check_target(name)
        supported = FORMATS[name].precisions
        default = STANDARD_PRECISIONS if "all" in targets else ("fp32",)
        wanted = precisions or [p for p in default if p in supported]
        for precision in wanted:
            if precision in supported:
                pairs.append((name, precision))
            elif "all" not in targets:
                raise UserError(f"--precision {precision}: {name} supports {', '.join(supported)}")
    if not pairs:
        raise UserError(f"--precision {', '.join(precisions or [])}: no target supports it")
    return pairs


def artifact_name(role: str, size: tuple[int, int], precision: str, suffix: str, dynamic: bool = False) -> str:
    height, width = size
    tag = ("_dynamic" if dynamic else "" if size == (256, 256) else f"_{height}" if height == width
           else f"_{height}x{width}")
    return f"{role}{tag}_{precision}{suffix}"


def is_dynamic(size: str | int | None) -> bool:
    """``--size dynamic``: one artifact with dynamic height and width, where the target has them."""
    return str(size).strip().lower() == "dynamic" if size is not None else False


def dynamic_check_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The sizes a dynamic artifact is verified at: the model's own, a landscape and a portrait
    one (3:5 and 5:3 of it, multiples of 8 so every generator's stride divides them)."""
    def near(value: float) -> int:
        return max(8, int(round(value / 8)) * 8)
    return list(dict.fromkeys([(height, width), (near(height * 0.75), near(width * 1.25)),
                               (near(height * 1.25), near(width * 0.75))]))
