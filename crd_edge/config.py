"""Run configuration: typed dataclasses, a YAML file and ``--set a.b=value`` overrides.

The resolved config is saved in every run directory and checkpoint, so a run can be
re-created and a checkpoint explains itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crd_edge.errors import UserError
from crd_edge.models.family import Member


# Defaults = the built-in job that `crd-edge distill` runs with no arguments (minutes on a 2-core
# CPU; `--recipe look` is the full recipe). The paper's settings are in configs/paper*.yaml.
#
# The student trains on teacher-labelled views (crd_edge.data.views): random-scale 128 px crops
# of the built-in photos, the teacher run on each view itself, so every target depends only on
# what the student sees. It is scored on the fixed held-out views of photos it never trains on
# (KID, VGG distance, PSNR against the teacher; docs/distill.md has the measurements behind
# these choices). The previous default (crops of the teacher's output on the whole photo, pixel
# L1) ended close to the identity: its student could not see what its targets depended on.


@dataclass
class DataConfig:
    data: str | None = None          # folder, or None / "builtin" for the built-in photos
    layout: str = "auto"             # auto | builtin | folder | unaligned | aligned
    size: int = 128                  # training crop (paper: 256)
    load_size: int = 256             # resize before the crop (paper: 286); = test_size: train at the test scale
    test_size: int = 256             # held-out evaluation and samples
    augment_views: int = 0           # >0: cycle K fixed random crops/flips per image (exact teacher cache)
    color_jitter: float = 0.0        # >0: random colour gains/offsets/saturation of that strength
    batch_size: int = 8
    workers: int = 0
    # Teacher-labelled views (crd_edge.data.views): >0 trains on this many random views of the
    # photos (random scale, crop, flip, photometric change), each labelled by the teacher run on
    # the view itself, kept in an on-disk bank; data.size is the view size. 0: the dataset path
    # above (crops of data.load_size images, targets from teacher.cache).
    views: int = 4000
    # Label every view before the first step (true), or in a background thread while the student
    # trains on the views labelled so far (false). On a 2-core CPU the two compete for the cores
    # (the main job's 1500 steps took 22.5 min beside the teacher; the teacher alone labels the
    # 4032 views in 9.7 min and the steps alone take about 7), and training from the whole bank at
    # once scored +0.19 dB held-out PSNR on the same seed (docs/distill.md).
    label_ahead: bool = True
    view_max_short: int = 400        # the photo's short side is resized into [size, this] per view
    view_jitter: float = 0.3         # probability of a photometric change before the teacher
    video_stride: int = 30           # frames between two frames taken from a video in --data
    # >0: train on this many of the training photos only (the same ones in every run: ordered by
    # the CRC-32 of their names, so 51 are among the 102), the held-out split unchanged. For a
    # learning curve by the number of photos: how many does a teacher need?
    train_photos: int = 0


@dataclass(frozen=True)
class Candidate:
    """One measured member of a student family, its measured p50 and its true MACs."""
    name: str
    member: Member
    ms: float
    true_gmacs: float

    def as_dict(self) -> dict:
        return {"name": self.name, "member": self.member.as_dict(), "ms": self.ms, "true_gmacs": self.true_gmacs}

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        return cls(d["name"], Member.from_dict(d["member"]), d["ms"], d["true_gmacs"])


@dataclass(frozen=True)
class StudentChoice:
    """Why a run's student is this one (``distill --latency-budget``): the largest member of the
    family measured within the budget, in one runtime and precision on one device. Kept in the
    config as a dict (``student.selection``, see :meth:`as_dict`) so the run explains itself."""
    budget_ms: float
    runtime: str
    precision: str
    device: str
    table: str
    chosen: Candidate
    runner_up: Candidate | None
    candidates: tuple[Candidate, ...]
    plot: str | None = None  # latency_choice.png beside the run, once drawn

    def as_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "chosen": self.chosen.as_dict(), "runner_up": self.runner_up and self.runner_up.as_dict(),
                "candidates": [c.as_dict() for c in self.candidates]}

    @classmethod
    def from_dict(cls, d: dict) -> "StudentChoice":
        def candidate(c: dict | None) -> Candidate | None:
            return Candidate.from_dict(c) if c else None
        return cls(**{**d, "chosen": candidate(d["chosen"]), "runner_up": candidate(d.get("runner_up")),
                      "candidates": tuple(Candidate.from_dict(c) for c in d["candidates"])})


@dataclass
class ModelConfig:
    # The default student is pruned from the teacher and starts from its weights (init below);
    # with a teacher whose weights cannot be read (ONNX) it trains from random weights.
    arch: str = "resnet_9blocks_inherited"
    kwargs: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)  # why this student: StudentChoice.as_dict(), for the report
    # Where the student's weights start (crd_edge/models/inherit.py): "teacher" prunes the
    # teacher's own weights into the student's layers (an architecture with ``channels``, a
    # white-box ResNet teacher); "random" is a fresh initialisation; "auto" inherits when both
    # allow it, else starts at random with a one-line note.
    init: str = "auto"


@dataclass
class TeacherConfig:
    source: str | None = "vintagify"  # file (.pt TorchScript or state dict, .onnx) | "vintagify" | None (online)
    arch: str | None = None          # architecture of a state-dict teacher (inferred when None)
    kwargs: dict = field(default_factory=dict)
    mode: str = "offline"            # offline (frozen pretrained) | online (trained alongside)
    recipe: str = "cyclegan"         # online recipe: cyclegan | pix2pix
    cache: str = "full"              # full | exact | off: see crd_edge.training.teacher_cache (paper configs: off)
    cycle_weight: float = 10.0       # online CycleGAN teacher losses
    identity_weight: float = 0.5
    l1_weight: float = 100.0         # online pix2pix teacher L1
    pool_size: int = 50
    save_epoch_freq: int = 10        # online CycleGAN: teacher epochs between student phases
    n_dis: int = 4                   # online CycleGAN: student epochs per teacher epoch


@dataclass
class LossConfig:
    crd_rows: float = 25.0
    crd_columns: float = 25.0
    crd_patches: float = 25.0
    patch_size: int = 32
    rkd_distance: float = 1.0
    rkd_angle: float = 2.0
    # VGG terms: off in the built-in job (3-4x the cost of a step, no held-out PSNR gain measured);
    # 0.01 / 0.02 balance them against pixel_l1 100 with the normalised VGG input.
    style: float = 0.0               # per VGG layer, Gram L1 (paper: 1e4 for un-normalised VGG input)
    feature: float = 0.0             # VGG relu2_2 L1 (paper: 10, same caveat)
    # Adversarial term. null: chosen by the path: 0 on teacher-labelled views (the built-in job:
    # with a student inherited from the teacher, the discriminator's step made a training step
    # 1.8x as long for no held-out gain at 300 steps, docs/distill.md), 1 on the dataset and
    # online paths (the paper's schemes, where the term is part of the method).
    gan: float | None = None
    # With data.views: a discriminator learns teacher outputs (real) from student outputs (fake) on
    # the same views, "conditional" on the input (input | output pairs) or "unconditional".
    gan_d: str = "conditional"
    gan_mode: str = "lsgan"          # lsgan | hinge (views path)
    d_ndf: int = 32                  # PatchGAN width (64 in CycleGAN; 32 keeps a CPU step cheap)
    d_layers: int = 3
    pixel_l1: float = 100.0          # L1 to the teacher output; 0 in the paper recipes
    # Feature distillation from a white-box teacher (crd_edge/training/feature_distill.py): MSE
    # between 1x1-adapted student activations and the teacher's at these points. Off by default.
    distill_features: float = 0.0
    distill_points: str = "encoder"  # comma-separated: encoder, middle, decoder
    vgg_weights: str | None = None   # explicit VGG16 weights file


@dataclass
class OptimConfig:
    # Paper: 2e-4 over 200 epochs. The built-in job is 1500 steps: 1e-3 gained 0.2-0.3 dB held-out
    # PSNR over 5e-4 on three runs (seeds 0 and 2, two view banks), 2e-3 and 4e-3 cost KID
    # (docs/distill.md, "More learning per step?"). The `look` recipe keeps 5e-4.
    lr: float = 1e-3
    beta1: float = 0.9               # paper: 0.5 (set in configs/paper*)
    beta2: float = 0.999
    decay_from: float = 0.5          # fraction of the steps at constant LR, then linear to 0
    # Clip the student's gradient norm (0: off). Typical norms in the built-in job are 15-35;
    # without clipping the norm-free default student once spiked to 700 at LR 2e-3 and saturated
    # for good (held-out 3.7 dB); clipped at 50, the same run ends at +0.56 dB. Paper recipes: 0.
    grad_clip: float = 50.0
    d_lr: float = 2e-4               # the views path's discriminator (Adam, same betas)


@dataclass
class TrainConfig:
    steps: int | None = 1500         # total student steps (wins over epochs; null to use epochs)
    epochs: int = 200                # paper: 100 constant + 100 decay
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    amp: bool = True                 # mixed precision: fp16 on CUDA, bf16 on a CPU with AMX or AVX512-BF16
    channels_last: bool = False      # NHWC student and discriminator (no gain measured on a 2-core AMD CPU)
    log_every: int = 10
    sample_every: int = 200
    save_every: int = 200
    eval_images: int = 0             # held-out images scored at the end (0 = all)
    eval_every: int = 250            # views path: held-out PSNR and training-set L1 every N steps (0: end only)
    eval_full: bool = False          # ... and KID, FID, vgg_dist, SSIM at those steps too (a minute each on a CPU)
    # The held-out scoring at the end (views path): full (KID, FID, vgg_dist, PSNR, SSIM: minutes
    # on a CPU), quick (PSNR, SSIM: seconds), none; auto: full from 1000 steps, else quick.
    eval: str = "auto"


@dataclass
class RunConfig:
    name: str | None = None
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "data.layout": ("auto", "builtin", "folder", "unaligned", "aligned"),
    "student.init": ("auto", "teacher", "random"),
    "teacher.mode": ("offline", "online"),
    "teacher.recipe": ("cyclegan", "pix2pix"),
    "teacher.cache": ("exact", "full", "off"),
    "loss.gan_d": ("conditional", "unconditional"),
    "loss.gan_mode": ("lsgan", "hinge"),
    "train.eval": ("auto", "full", "quick", "none"),
}
FULL_EVAL_FROM_STEPS = 1000  # train.eval=auto: a shorter run is a trial, scored in seconds


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce/validate one value against its annotation; a mismatch is a UserError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string: accept the number a user meant.
        try:
            return float(value)
        except ValueError:
            pass
    expected = dict if hint is dict else hint
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(f"config {key}={value!r}: expected {getattr(hint, '__name__', hint)}")
    if key in CHOICES and value not in CHOICES[key]:
        raise UserError(f"config {key}={value!r}: expected one of {', '.join(CHOICES[key])}")
    return value


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = prefix + key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise UserError(f"unknown config key {full!r}{hint}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise UserError(f"config {full!r} must be a mapping")
            kwargs[key] = _build(hints[key], value, full + ".")
        else:
            kwargs[key] = _check_type(full, value, hints[key])
    return cls(**kwargs)


AT_LEAST_1 = ("data.size", "data.load_size", "data.test_size", "data.batch_size", "loss.patch_size",
              "train.epochs", "train.log_every", "teacher.save_epoch_freq", "teacher.n_dis")
AT_LEAST_0 = ("data.workers", "data.augment_views", "train.sample_every", "train.save_every",
              "train.eval_images", "teacher.pool_size", "data.views", "train.eval_every",
              "data.train_photos")


def _floats(cfg: RunConfig):
    """(key, value) of every float setting."""
    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        if dataclasses.is_dataclass(part):
            for f in dataclasses.fields(part):
                value = getattr(part, f.name)
                if isinstance(value, float):
                    yield f"{section.name}.{f.name}", value


def validate(cfg: RunConfig) -> RunConfig:
    """Range checks that types cannot express; each failure names the key and the fix."""
    def get(key):
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)
    if cfg.name is not None and (Path(cfg.name).name != cfg.name or cfg.name in ("", ".", "..") or "\\" in cfg.name):
        raise UserError(f"--name {cfg.name}: a run name is a folder name, not a path; "
                        f"choose where runs go with --runs-dir")
    for key, value in _floats(cfg):
        if not math.isfinite(value):
            raise UserError(f"config {key}={value}: must be a finite number")
        # Weights, rates and clips are magnitudes: a negative one would train towards the opposite.
        if key.split(".")[0] in ("loss", "optim", "teacher") and value < 0:
            raise UserError(f"config {key}={value}: must not be negative")
    for key in ("optim.beta1", "optim.beta2"):
        if not 0 <= get(key) < 1:
            raise UserError(f"config {key}={get(key)}: expected 0 <= value < 1")
    for key in AT_LEAST_1:
        if get(key) < 1:
            raise UserError(f"config {key}={get(key)}: must be at least 1")
    for key in AT_LEAST_0:
        if get(key) < 0:
            raise UserError(f"config {key}={get(key)}: must not be negative")
    if cfg.train.steps is not None and cfg.train.steps < 1:
        raise UserError(f"config train.steps={cfg.train.steps}: must be at least 1 (or null)")
    if cfg.teacher.mode == "online" and cfg.teacher.source is not None:
        raise UserError(f"--teacher {cfg.teacher.source}: --online (teacher.mode=online) trains the teacher from "
                        "scratch, so a pretrained one would be ignored; drop --teacher (teacher.source=null) or "
                        "drop --online to distil from it")
    if cfg.data.views and cfg.teacher.mode == "online":
        raise UserError("data.views needs a pretrained (offline) teacher; set data.views=0 for online distillation")
    if cfg.data.views and cfg.data.views < cfg.data.batch_size:
        raise UserError(f"config data.views={cfg.data.views}: must be at least data.batch_size={cfg.data.batch_size}")
    if cfg.data.views and cfg.data.view_max_short < cfg.data.size:
        raise UserError(f"config data.view_max_short={cfg.data.view_max_short}: must be at least data.size={cfg.data.size}")
    if not 0 <= cfg.data.view_jitter <= 1:
        raise UserError(f"config data.view_jitter={cfg.data.view_jitter}: expected a probability in [0, 1]")
    if cfg.data.video_stride < 1:
        raise UserError(f"config data.video_stride={cfg.data.video_stride}: must be at least 1")
    if not 0 <= cfg.data.color_jitter < 1:
        raise UserError(f"config data.color_jitter={cfg.data.color_jitter}: expected 0 <= value < 1")
    if cfg.data.color_jitter > 0 and cfg.teacher.cache == "full" and cfg.teacher.mode == "offline":
        raise UserError(f"data.color_jitter={cfg.data.color_jitter} needs the teacher run on the jittered views: "
                        "add --set teacher.cache=exact (or off); the full cache sees un-jittered whole images")
    from crd_edge.models.registry import check_size
    for key in ("data.size", "data.test_size"):
        check_size(cfg.student.arch, cfg.student.kwargs, get(key), get(key), f"config {key}")
        if cfg.teacher.arch:
            check_size(cfg.teacher.arch, cfg.teacher.kwargs, get(key), get(key), f"config {key}")
    patch, size = cfg.loss.patch_size, cfg.data.size
    if cfg.loss.crd_patches and (size % patch or size // patch < 2):
        raise UserError(f"--size {size}: the CRD patch term needs a multiple of loss.patch_size={patch} "
                        f"with at least 2 patches per side (e.g. {max(2, size // patch) * patch}), "
                        "or --set loss.crd_patches=0")
    return cfg


def config_from_dict(values: dict) -> RunConfig:
    """Build a RunConfig from nested dicts, checking keys, types and ranges."""
    cfg = _build(RunConfig, values)
    if cfg.loss.gan is None:  # see LossConfig.gan
        cfg.loss.gan = 0.0 if cfg.data.views else 1.0
    if cfg.train.eval == "auto":  # see TrainConfig.eval
        long_run = cfg.train.steps is None or cfg.train.steps >= FULL_EVAL_FROM_STEPS
        cfg.train.eval = "full" if long_run else "quick"
    return validate(cfg)


def set_key(values: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts (the key must already exist; the type is checked later)."""
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise UserError(f"unknown config key {dotted!r}")
        node = node[part]
    if parts[-1] not in node and not (len(parts) > 2 and parts[-2] == "kwargs"):
        close = difflib.get_close_matches(parts[-1], list(node), n=1)
        hint = f" (did you mean {'.'.join(parts[:-1] + close[:1])!r}?)" if close else ""
        raise UserError(f"unknown config key {dotted!r}{hint}")
    node[parts[-1]] = value


RECIPES_DIR = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The config file of a recipe shipped with crd-edge (``--recipe NAME``)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, recipe_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"--recipe {name}: unknown recipe{hint}; recipes: {', '.join(recipe_names()) or 'none'}")
    return path


def distill_overrides(*, data: str | None = None, layout: str | None = None, teacher: str | None = None,
                      teacher_arch: str | None = None, online: bool = False, student: str | None = None,
                      init: str | None = None, steps: int | None = None, epochs: int | None = None,
                      batch_size: int | None = None, size: int | None = None, name: str | None = None,
                      runs_dir: str | None = None, device: str | None = None, seed: int | None = None,
                      eval_mode: str | None = None) -> dict:
    """The config keys ``crd-edge distill``'s options set (``base`` of :func:`load_config`): only
    the options given, except where leaving a key out would let the file's value win wrongly."""
    options = {"data.data": data, "data.layout": layout, "teacher.source": teacher,
               "teacher.arch": teacher_arch, "student.arch": student, "student.init": init, "train.steps": steps,
               "train.epochs": epochs, "data.batch_size": batch_size, "data.size": size,
               "name": name, "runs_dir": runs_dir, "train.device": device, "train.seed": seed, "train.eval": eval_mode}
    if epochs is not None and steps is None:
        options["train.steps"] = None  # --epochs alone: let the epochs decide the length
    if online:
        # An online teacher changes every step: no labelled views, the dataset path.
        options.update({"teacher.mode": "online", "teacher.source": teacher, "data.views": 0})
    return {k: v for k, v in options.items() if v is not None or k == "train.steps" and epochs is not None
            or k == "teacher.source" and online}  # --online alone: no pretrained teacher


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                base: dict | None = None) -> RunConfig:
    """Defaults <- YAML file <- ``base`` (the CLI's explicit options, e.g. ``--data``) <- ``--set
    key=value`` overrides: what is typed on the command line wins over the file."""
    values = RunConfig().to_dict()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--config {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"--config {path}: expected a mapping of config sections")
        _merge(values, loaded)
    for dotted, value in (base or {}).items():
        set_key(values, dotted, value)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set loss.crd_rows=10")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML (quote strings with spaces or brackets)") from None
        try:
            set_key(values, key.strip(), value)
        except UserError as exc:  # name the option it came from, and where the keys are listed
            raise UserError(f"--set {item}: {exc}; a run's config.json lists every key") from None
    return config_from_dict(values)


def _merge(root: dict, new: dict, prefix: str = "") -> None:
    """Merge a YAML mapping into the defaults key by key, so unknown keys are caught."""
    node = root
    for part in prefix.split(".")[:-1] if prefix else []:
        node = node[part]
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict) and key != "kwargs":
            _merge(root, value, f"{prefix}{key}.")
        else:
            set_key(root, prefix + key, value)
