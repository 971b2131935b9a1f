"""Imports point one way: a module may import its own package and the layers below it, never a
layer above it nor a sibling in its own layer. The order is documented in docs/design.md; every
import counts, including the lazy ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import crd_edge

# Bottom to top. A "unit" is a top-level module (crd_edge/<name>.py) or package (crd_edge/<name>/).
LAYERS = [
    ("errors",),
    ("_io", "_deps", "_version", "_progress", "imaging"),
    ("_assets",),
    ("models",),
    ("config",),
    ("checkpoint",),
    ("artifacts",),
    ("data", "runtime", "analysis"),
    ("eval",),
    ("training",),
    ("export",),
    ("bench",),
    ("demo", "experiments"),
    ("pipeline",),
    ("cli",),
    ("__main__",),
]
ROOT = Path(crd_edge.__file__).parent
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "crd_edge" else [f"crd_edge.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "crd_edge" or n.startswith("crd_edge.")]
    return found


def _units() -> dict[str, list[Path]]:
    units: dict[str, list[Path]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        unit = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else "__init__"
        units.setdefault(unit, []).append(path)
    return units


def test_every_module_has_a_layer():
    missing = sorted(set(_units()) - set(LAYER_OF) - {"__init__"})
    assert not missing, f"add these to LAYERS here and in docs/design.md: {missing}"


def test_imports_point_down():
    wrong = []
    for unit, paths in _units().items():
        if unit == "__init__":  # the package root (version, public API) may import anything
            continue
        for path in paths:
            for line, module in _imports(path):
                target = _unit(module)
                if target == unit:
                    continue
                if target == "__init__" or LAYER_OF.get(target, 99) >= LAYER_OF[unit]:
                    wrong.append(f"{path.relative_to(ROOT.parent)}:{line} {unit} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_checker_sees_lazy_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from crd_edge.cli import app\n    import crd_edge.bench.run\n")
    assert [m for _, m in _imports(sample)] == ["crd_edge.cli", "crd_edge.bench.run"]
