import pytest

from crd_edge.config import load_config
from crd_edge.errors import UserError


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  crd_rows: 5\ntrain:\n  steps: 7\n")
    cfg = load_config(path, ["loss.crd_rows=2", "student.kwargs.ngf=8", "data.data=/x"], base={"train.seed": 3})
    assert cfg.loss.crd_rows == 2.0 and isinstance(cfg.loss.crd_rows, float)  # int coerced to float
    assert cfg.train.steps == 7 and cfg.train.seed == 3
    assert cfg.student.kwargs == {"ngf": 8} and cfg.data.data == "/x"
    assert cfg.loss.crd_patches == 25.0  # untouched default (paper weight)


def test_exponent_floats_without_a_dot():
    # YAML 1.1 reads 1e-4 as a string; a float option takes it as the number meant.
    cfg = load_config(overrides=["optim.lr=1e-4", "optim.grad_clip=5E1"])
    assert cfg.optim.lr == 1e-4 and cfg.optim.grad_clip == 50.0
    with pytest.raises(UserError, match="expected float"):
        load_config(overrides=["optim.lr=fast"])


@pytest.mark.parametrize("override,match", [
    ("loss.crd_row=1", "did you mean 'loss.crd_rows'"),
    ("train.steps=abc", "expected int"),
    ("teacher.mode=sideways", "expected one of offline, online"),
    ("loss", "expected key=value"),
    ("nope.x=1", "unknown config key"),
])
def test_bad_overrides_are_user_errors(override, match):
    with pytest.raises(UserError, match=match):
        load_config(overrides=[override])


def test_bad_config_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(listing)


def test_shipped_recipes_load():
    from pathlib import Path
    recipes = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))
    assert recipes
    for path in recipes:
        cfg = load_config(path)
        assert cfg.loss.crd_rows > 0, path


def test_builtin_job_trains_at_the_test_scale():
    # Held-out photos are scored whole at test_size: the default student trains on crops of
    # photos resized to that size, against the teacher's whole-image output (teacher.cache=full).
    cfg = load_config()
    assert cfg.data.load_size == cfg.data.test_size > cfg.data.size
    assert cfg.teacher.cache == "full"
    with pytest.raises(UserError, match="teacher.cache=exact"):
        load_config(overrides=["data.color_jitter=0.3"])
    assert load_config(overrides=["data.color_jitter=0.3", "teacher.cache=exact"]).data.color_jitter == 0.3


def test_the_adversarial_term_follows_the_training_path():
    # Teacher-labelled views (the built-in job): off; the dataset and online paths (the paper's
    # schemes): on; whatever a file or --set says wins, and config.json records the number.
    assert load_config().loss.gan == 0.0
    assert load_config(overrides=["data.views=0"]).loss.gan == 1.0
    assert load_config(base={"teacher.mode": "online", "teacher.source": None, "data.views": 0}).loss.gan == 1.0
    assert load_config(overrides=["loss.gan=0.5"]).loss.gan == 0.5
    assert load_config(overrides=["data.views=0", "loss.gan=0"]).loss.gan == 0.0


def test_the_end_of_run_scoring_scales_with_the_run():
    from crd_edge.config import load_config
    assert load_config(None).train.eval == "full"  # the main job: 1500 steps
    assert load_config(None, ["train.steps=20"]).train.eval == "quick"  # a trial run: seconds
    assert load_config(None, ["train.steps=20", "train.eval=full"]).train.eval == "full"
    assert load_config(None, ["train.steps=null"]).train.eval == "full"  # epochs: a real run
