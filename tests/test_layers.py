"""Imports point one way: a module may import its own package and the layers below it, never a
layer above it nor a sibling in its own layer. The order is documented in docs/design.md; every
import counts, including the lazy ones inside functions."""

from __future__ import annotations

import ast
import re
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
    ("demo",),
    ("pipeline",),
    ("cli",),
    ("__main__",),
]
ROOT = Path(crd_edge.__file__).parent
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULE_TEXT = re.compile(r"crd_edge(\.\w+)+")  # a module named in a string: importlib's argument


def _imports(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """Every crd_edge module ``path`` imports: absolute and relative ``import``s (lazy ones inside
    functions too) and the module names in strings, which ``importlib`` turns into imports
    (``"crd_edge.export.onnx"``, ``f"crd_edge.export.{name}"``: the unit before the braces)."""
    found = []
    if package is None:  # the file's own package: what its relative imports start from
        package = ["crd_edge", *path.relative_to(ROOT).parent.parts] if path.is_relative_to(ROOT) else ["crd_edge"]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..y import z, resolved against the file's package
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] if module != "crd_edge" else [f"crd_edge.{a.name}" for a in node.names]
            if node.level and not node.module:
                names = [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = MODULE_TEXT.fullmatch(node.value.partition(":")[0])
            names = [node.value.partition(":")[0]] if match else []
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            head = str(node.values[0].value)
            names = [head.rstrip(".")] if MODULE_TEXT.fullmatch(head.rstrip(".")) else []
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


def _imports_research(node: ast.AST) -> bool:
    names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else
             [a.name for a in node.names] if isinstance(node, ast.Import) else [])
    return any(n.split(".")[0] == "research" for n in names)


def test_the_package_never_imports_the_research_scripts(tmp_path):
    """research/ sits beside the package and is not installed: an import of it would work in a
    checkout and fail for every user."""
    wrong = [f"{path.relative_to(ROOT.parent)}:{node.lineno}" for path in sorted(ROOT.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text())) if _imports_research(node)]
    assert not wrong, "crd_edge imports research/: " + ", ".join(wrong)
    assert _imports_research(ast.parse("def f():\n    from research.anatomy import main\n").body[0].body[0])


def test_the_checker_sees_lazy_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from crd_edge.cli import app\n    import crd_edge.bench.run\n")
    assert [m for _, m in _imports(sample)] == ["crd_edge.cli", "crd_edge.bench.run"]


def test_the_checker_sees_relative_and_string_imports(tmp_path):
    sample = tmp_path / "probe.py"  # read as if it were crd_edge/artifacts/probe.py
    sample.write_text("import importlib\nfrom . import contract\nfrom ..runtime import open_session\n"
                      "importlib.import_module('crd_edge.export.onnx')\nname = 'x'\n"
                      "importlib.import_module(f'crd_edge.bench.{name}')\nSESSION = 'crd_edge.runtime.a:B'\n")
    found = sorted(m for _, m in _imports(sample, ["crd_edge", "artifacts"]))
    assert found == ["crd_edge.artifacts.contract", "crd_edge.bench", "crd_edge.export.onnx", "crd_edge.runtime",
                     "crd_edge.runtime.a"]


def test_each_format_s_exporter_and_session_are_registered_where_they_live():
    """The format table says which targets export and run; the modules that do it are named in
    the layer that owns them, so no lower layer names an upper one."""
    from crd_edge.artifacts import EXPORT_TARGETS, FORMATS
    from crd_edge.export import EXPORTERS
    from crd_edge.runtime import SESSIONS
    assert set(EXPORTERS) == set(EXPORT_TARGETS)
    assert set(SESSIONS) == {t for t, f in FORMATS.items() if f.session}


MAX_FUNCTION_LINES, MAX_CLASS_LINES = 60, 300  # docstrings and comments included


def _oversized(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        limit = (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
        if limit and node.end_lineno - node.lineno + 1 > limit:
            found.append(f"{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    return found


def test_functions_and_classes_stay_small_enough_to_read():
    over = [f"{path.relative_to(ROOT)}: {name}" for path in sorted(ROOT.rglob("*.py"))
            for name in _oversized(path.read_text())]
    assert not over, "split these (one job each): " + "; ".join(over)


def test_the_size_check_sees_a_long_function_and_a_long_class():
    body = "\n".join(["    x = 1"] * 60)
    assert _oversized(f"def f():\n{body}\n") == ["f (61 lines)"]
    assert _oversized("class C:\n" + "\n".join([f"    a{i} = {i}" for i in range(300)]) + "\n") == ["C (301 lines)"]
    assert _oversized("def g():\n    pass\n") == []
