"""The paper recipes in configs/paper/: each loads, names registered architectures, records the
published numbers it is measured against, and runs end to end for a few steps on tiny data
(the recipe's own architectures and losses; only data, sizes and length are overridden)."""

import json
from pathlib import Path

import pytest

from crd_edge.config import load_config
from crd_edge.models.registry import list_models

RECIPES = sorted((Path(__file__).parent.parent / "configs" / "paper").glob("*.yaml"))


def test_the_paper_setups_are_all_there():
    assert {p.stem for p in RECIPES} == {"horse2zebra", "summer2winter_yosemite", "edges2shoes_resnet",
                                         "edges2shoes_unet"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_with_registered_models_and_paper_settings(recipe):
    cfg = load_config(recipe)
    names = set(list_models())
    assert cfg.student.arch in names and cfg.teacher.arch in names
    assert cfg.teacher.mode == "online" and cfg.teacher.source is None
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.loss.crd_rows, cfg.loss.pixel_l1) == (2e-4, 0.5, 25, 0)
    assert cfg.data.batch_size == (1 if cfg.teacher.recipe == "cyclegan" else 4)
    text = recipe.read_text()
    assert "crd-edge distill --config configs/paper/" + recipe.name in text and 'docs/method.md, "Published figures"' in text
    assert "Untimed on a GPU" in text


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [p for p in RECIPES if p.stem != "summer2winter_yosemite"], ids=lambda p: p.stem)
def test_recipe_runs_end_to_end_on_tiny_data(run_cli, unaligned, aligned, tmp_path, recipe):
    cfg = load_config(recipe)
    data = unaligned if cfg.teacher.recipe == "cyclegan" else aligned
    size = 256 if cfg.student.arch.startswith("unet") else 64  # U-Net-256 needs 256 pixels
    code, out, err = run_cli("distill", "--config", recipe, "--data", data, "--steps", 2, "--name", "r",
                             "--runs-dir", tmp_path / "runs", "--quiet", "--set", f"data.size={size}",
                             "--set", f"data.load_size={size}", "--set", f"data.test_size={size}",
                             "--set", "data.batch_size=1", "--set", "teacher.save_epoch_freq=1",
                             "--set", "teacher.n_dis=1")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["teacher"]["kind"] == "online"
    assert summary["teacher"]["arch"]["name"] == cfg.teacher.arch
    assert (tmp_path / "runs" / "r" / "checkpoint.pt").is_file()


def test_command_line_options_win_over_the_recipe_file():
    cfg = load_config(RECIPES[0], ["train.seed=5"], base={"data.data": "/elsewhere", "train.steps": 3})
    assert (cfg.data.data, cfg.train.steps, cfg.train.seed) == ("/elsewhere", 3, 5)
