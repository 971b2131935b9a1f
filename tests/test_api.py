"""The top-level Python API: the CLI's own calls, loaded on first use."""

import subprocess
import sys

import numpy as np
import torch

import crd_edge


def test_importing_the_package_stays_light():
    code = "import sys, crd_edge; print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_each_name_is_what_the_command_calls():
    from crd_edge.bench.run import bench
    from crd_edge.config import load_config
    from crd_edge.eval.score import evaluate
    from crd_edge.export.run import export
    from crd_edge.pipeline import run_pipeline
    from crd_edge.runtime.model import open_model
    from crd_edge.training.loop import distill

    assert (crd_edge.load_config, crd_edge.distill, crd_edge.export_model, crd_edge.benchmark, crd_edge.evaluate,
            crd_edge.load, crd_edge.run_pipeline) == (load_config, distill, export, bench, evaluate, open_model,
                                                      run_pipeline)
    assert set(crd_edge.__all__) <= set(dir(crd_edge))


def test_export_then_load_from_the_top_level(tmp_path):
    from crd_edge._io import atomic_torch_save
    from crd_edge.checkpoint import student_record
    from crd_edge.models import create_model

    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8).eval()
    atomic_torch_save({"format_version": 1, "student": student_record(model, 32)}, tmp_path / "c.pt")
    (result,) = crd_edge.export_model(tmp_path / "c.pt", "onnx", "fp32", out_dir=tmp_path / "export")
    assert result.status == "passed"
    loaded = crd_edge.load(str(tmp_path / "export"))
    # Not a constant image: InstanceNorm of a flat input divides round-off by round-off.
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(np.asarray(loaded.run(x)) - expected).max() < 1e-4


def test_an_unknown_name_is_an_attribute_error():
    import pytest
    with pytest.raises(AttributeError, match="no attribute 'train'"):
        crd_edge.train  # noqa: B018


def test_the_package_is_typed_and_its_lazy_names_are_visible_to_type_checkers():
    """PEP 561's marker ships with the package (package data), and every lazy top-level name has
    a TYPE_CHECKING import that a type checker or an IDE follows to its real definition."""
    import ast
    import tomllib
    from pathlib import Path

    import crd_edge
    root = Path(crd_edge.__file__).parent
    assert (root / "py.typed").is_file()
    data = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["crd_edge"]
    tree = ast.parse((root / "__init__.py").read_text())
    guarded = {alias.asname or alias.name: (node.module, alias.name)
               for block in tree.body if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert guarded == {name: tuple(where) for name, where in crd_edge._API.items()}
