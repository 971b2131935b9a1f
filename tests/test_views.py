"""The view-based data engine: Qt resource reading, GCompris licences, views and the held-out
split, photo folders with videos, the on-disk bank of labelled views, the teacher's labeller,
held-out scoring and the colour/context heads of the students."""

import random
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from crd_edge.data.gcompris import parse_readme
from crd_edge.data.photo_source import load_photo_set
from crd_edge.data.qt_rcc import RccError, iter_rcc
from crd_edge.data.views import ViewSpec, heldout_views, is_heldout_name, sample_view
from crd_edge.errors import UserError
from crd_edge.models import create_model
from crd_edge.training.heldout import build_heldout, quick_scores, score_heldout, student_outputs
from crd_edge.training.view_bank import SHARD, TeacherLabeller, ViewBank


# -- Qt resource files -------------------------------------------------------------------------

def make_rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A format-2 rcc blob with one directory ``/d`` holding ``files`` (name -> (data, compress)),
    laid out the way Qt's rcc tool writes it (names, data, tree tables)."""
    names, data, name_off, data_off = b"", b"", {}, {}

    def add_name(name):
        nonlocal names
        name_off[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded

    for name in ["d", *files]:
        add_name(name)
    for name, (blob, compress) in files.items():
        data_off[name] = len(data)
        payload = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
        data += struct.pack(">I", len(payload)) + payload
    node = lambda name_o, flags, a, b: struct.pack(">IHII", name_o, flags, a, b) + b"\0" * 8
    tree = node(0, 2, 1, 1)                      # root: one child at index 1
    tree += node(name_off["d"], 2, len(files), 2)  # /d: its files from index 2
    for name, (_, compress) in files.items():
        tree += node(name_off[name], 1 if compress else 0, 0, data_off[name])
    header = 20
    tree_o, data_o, names_o = header, header + len(tree), header + len(tree) + len(data)
    return b"qres" + struct.pack(">IIII", 2, tree_o, data_o, names_o) + tree + data + names


def test_rcc_reader_returns_plain_and_compressed_files():
    blob = make_rcc({"a.txt": (b"hello", False), "b.bin": (b"x" * 1000, True)})
    assert dict(iter_rcc(blob)) == {"/d/a.txt": b"hello", "/d/b.bin": b"x" * 1000}
    assert dict(iter_rcc(blob, lambda p: p.endswith(".bin"))) == {"/d/b.bin": b"x" * 1000}


def test_rcc_reader_rejects_other_files():
    with pytest.raises(RccError, match="magic"):
        list(iter_rcc(b"PK\x03\x04" + b"\0" * 40))
    with pytest.raises(RccError, match="version"):
        list(iter_rcc(b"qres" + struct.pack(">IIII", 9, 20, 20, 20)))


def test_gcompris_readme_gives_each_file_its_licence():
    text = ("Copyright: Timothee Giet, 2018\nLicense: CC-BY-SA 4.0\nFiles:\nkey.svg\nmap.svg\n\n"
            "Copyright: Daniel Schwen\nLicense: CC-BY-SA 4.0\nSource: https://commons.example/Chichen.jpg\n"
            "Files:\nwonders/chichenItza.webp\n\nCopyright: A\nSource: s\nLicense: CC0-1.0\nFiles: fish1.webp\n")
    licences = parse_readme(text)
    assert licences["chichenItza.webp"] == {"copyright": "Daniel Schwen", "licence": "CC-BY-SA 4.0",
                                            "source": "https://commons.example/Chichen.jpg"}
    assert licences["key.svg"]["licence"] == "CC-BY-SA 4.0" and licences["fish1.webp"]["licence"] == "CC0-1.0"


# -- views and the held-out split ------------------------------------------------------------------

def photo(h=200, w=300, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_views_are_square_replayable_and_vary():
    img, spec = photo(), ViewSpec(size=64, max_short=160)
    a = sample_view(img, random.Random(1), spec)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, sample_view(img, random.Random(1), spec))
    assert not np.array_equal(a, sample_view(img, random.Random(2), spec))


def test_a_view_without_changes_is_a_crop_of_the_photo():
    img = photo(64, 100)
    view = sample_view(img, random.Random(0), ViewSpec(size=64, min_short=64, max_short=64, flip=False, jitter=0))
    assert any(np.array_equal(view, img[:, x:x + 64]) for x in range(37))


def test_heldout_split_is_fixed_and_named():
    photos = [("a", photo(seed=1)), ("b", photo(150, 150, seed=2))]
    views, names = heldout_views(photos, 64, per_photo=4)
    again, _ = heldout_views(photos, 64, per_photo=4)
    assert views.shape == (8, 64, 64, 3) and names == ["a"] * 4 + ["b"] * 4
    assert np.array_equal(views, again)


def test_heldout_rule_for_plain_folders_is_stable():
    chosen = [n for n in (f"img{i}.jpg" for i in range(400)) if is_heldout_name(n)]
    assert 25 <= len(chosen) <= 75  # about one in 8
    assert chosen == [n for n in (f"img{i}.jpg" for i in range(400)) if is_heldout_name(n)]


def test_photo_folder_with_a_video_and_a_corrupt_file(tmp_path):
    cv2 = pytest.importorskip("cv2")
    for i in range(12):
        Image.fromarray(photo(140, 160, seed=i)).save(tmp_path / f"p{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 140))
    for i in range(10):
        writer.write(photo(140, 160, seed=100 + i))
    writer.release()
    photos = load_photo_set(tmp_path, video_stride=4, min_size=64)
    names = [n for n, _ in photos.train + photos.test]
    assert [n for n in names if n.startswith("clip.avi#")] == ["clip.avi#0", "clip.avi#4", "clip.avi#8"]
    assert sum(n.startswith("p") for n in names) == 12
    assert photos.skipped.total == 1
    assert all(is_heldout_name(n.split("#")[0]) for n, _ in photos.test)
    assert not any(is_heldout_name(n.split("#")[0]) for n, _ in photos.train)
    assert {"name", "split", "file"} <= set(photos.manifest[0])


def test_photo_folder_errors_name_the_option(tmp_path):
    with pytest.raises(UserError, match="--data"):
        load_photo_set(tmp_path / "missing")
    with pytest.raises(UserError, match="no readable training images"):
        load_photo_set(tmp_path)


# -- the bank of labelled views -------------------------------------------------------------------

def invert(views: np.ndarray) -> np.ndarray:
    invert.calls += len(views)
    return 255 - views


invert.calls = 0


def test_bank_labels_views_and_reuses_them_from_disk(tmp_path):
    photos, spec = [photo(seed=i) for i in range(3)], ViewSpec(size=32, max_short=64)
    invert.calls = 0
    bank = ViewBank(tmp_path, photos, spec, invert, capacity=SHARD + 10, seed=3).start()
    x, y = bank.sample(16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 3, 32, 32) and torch.allclose(y, -x, atol=1e-6)  # 255 - v in [-1, 1] is -x
    bank.stop()
    bank.fill()
    assert len(bank) == 2 * SHARD and bank.complete and invert.calls == 2 * SHARD  # whole shards
    fx, _ = bank.first(5)
    again = ViewBank(tmp_path, photos, spec, invert, capacity=SHARD + 10, seed=3)
    assert len(again) == 2 * SHARD and invert.calls == 2 * SHARD and again.loaded_from_disk == 2 * SHARD
    assert torch.equal(again.first(5)[0], fx)
    larger = ViewBank(tmp_path, photos, spec, invert, capacity=3 * SHARD, seed=3)  # reuses the smaller bank
    assert larger.loaded_from_disk == 2 * SHARD and larger.fill_shard() and invert.calls == 3 * SHARD


def test_bank_knows_which_photo_each_view_came_from(tmp_path):
    # Flat photos of distinct colours: a view's colour names its photo (no photometric change).
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
    photos = [np.full((64 + 8 * i, 80, 3), c, np.uint8) for i, c in enumerate(colours)]
    bank = ViewBank(tmp_path, photos, ViewSpec(size=16, max_short=64, jitter=0.0), invert, capacity=2 * SHARD).fill()
    x, _ = bank.first(len(bank))
    seen = [colours.index(tuple(int(v) for v in ((x[i, :, 0, 0] + 1) * 127.5).round())) for i in range(len(x))]
    assert bank.photo_indices() == seen and len(set(seen)) == 3


def test_bank_relabels_a_torn_shard_and_reports_labeller_errors(tmp_path):
    photos, spec = [photo()], ViewSpec(size=32, max_short=64)
    ViewBank(tmp_path, photos, spec, invert, capacity=SHARD).fill()
    (tmp_path / "views_00000.npz").write_bytes(b"torn")
    bank = ViewBank(tmp_path, photos, spec, invert, capacity=SHARD)
    assert len(bank) == 0 and bank.fill_shard() and len(bank) == SHARD

    def failing(views):
        raise RuntimeError("teacher crashed")
    broken = ViewBank(tmp_path / "other", photos, spec, failing, capacity=SHARD).start()
    with pytest.raises(RuntimeError, match="teacher crashed"):
        broken.sample(2, torch.Generator())


def test_labeller_uses_openvino_only_when_it_matches_torch():
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    net = create_model("resnet_9blocks", ngf=8, n_blocks=1).eval()

    class Teacher:
        module = net

        def __call__(self, x):
            with torch.no_grad():
                return net(x)
    probe = np.stack([sample_view(photo(seed=i), random.Random(i), ViewSpec(size=32, max_short=64)) for i in range(4)])
    labeller = TeacherLabeller(Teacher(), 32, torch.device("cpu"), probe=probe)
    assert labeller.info["runtime"].startswith("OpenVINO") and labeller.info["psnr_vs_torch_db"] >= 40
    ref = TeacherLabeller(Teacher(), 32, torch.device("cpu"), probe=probe, runtime="torch")
    assert ref.info["runtime"].startswith("teacher's own")
    a, b = labeller(probe), ref(probe)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 8  # 16-bit compute, uint8 rounding
    assert labeller.passes == 4 and labeller.seconds > 0


# -- held-out scoring -----------------------------------------------------------------------------

def test_heldout_labels_are_cached_and_scores_compare_with_copying(tmp_path):
    photos = [("a", photo(seed=1)), ("b", photo(seed=2))]
    invert.calls = 0
    held = build_heldout(photos, 32, invert, tmp_path)
    assert len(held) == 20 and held.photos == 2 and invert.calls == 20
    assert build_heldout(photos, 32, invert, tmp_path).targets.tobytes() == held.targets.tobytes()
    assert invert.calls == 20  # read back, not labelled again
    perfect = held.targets.copy()
    scores = score_heldout(perfect, held, inception=False, vgg=False)
    assert scores["student"]["psnr"] > 100 and scores["student"]["ssim"] == pytest.approx(1.0)
    assert scores["psnr_gain_db"] > 50 and quick_scores(held.inputs, held)["psnr"] == pytest.approx(scores["input"]["psnr"])


def test_copying_the_inputs_vgg_dist_is_computed_once_per_heldout_set(tmp_path, monkeypatch):
    from crd_edge.eval import fidelity
    from crd_edge.errors import UserError
    try:
        fidelity.VGGDistance()
    except UserError as exc:
        pytest.skip(f"no VGG-16 weights here: {exc}")
    held = build_heldout([("a", photo(seed=1))], 32, invert, tmp_path)
    calls = []
    each = fidelity.VGGDistance.each
    monkeypatch.setattr(fidelity.VGGDistance, "each", lambda self, a, b, **kw: calls.append(len(a)) or each(self, a, b))
    first = score_heldout(held.targets.copy(), held, inception=False, ssim=False)
    again = score_heldout(held.inputs.copy(), held, inception=False, ssim=False)
    assert calls == [len(held)] * 3  # the student twice, the input once
    assert first["input"]["vgg_dist"] == again["input"]["vgg_dist"] > 0
    assert first["student"]["vgg_dist"] == pytest.approx(0, abs=1e-9)
    assert again["student"]["vgg_dist"] == pytest.approx(again["input"]["vgg_dist"], rel=1e-5)


def test_student_outputs_are_rounded_uint8():
    identity = torch.nn.Identity()
    identity.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    images = photo(32, 32)[None]
    assert np.array_equal(student_outputs(identity, images, torch.device("cpu")), images)


# -- global heads of the students ----------------------------------------------------------------

@pytest.mark.parametrize("arch", ["mobile_resnet_9blocks_ngf16_colour", "mobile_resnet_9blocks_ngf16_gc"])
def test_global_heads_start_as_the_plain_student_and_export(arch, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    student = create_model(arch).eval()
    head = student.colour if student.colour is not None else student.model[student.down_end]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    if student.colour is not None:
        assert torch.equal(head(x, torch.rand(2, 64, 16, 16)), x)  # identity colour transform at init
    else:
        feats = torch.rand(2, 64, 16, 16)
        assert torch.equal(head(feats), feats)
    path = tmp_path / "s.onnx"
    torch.onnx.export(student, x[:1], str(path), input_names=["image"], output_names=["out"], dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = student(x[:1]).numpy()
    assert np.abs(session.run(None, {"image": x[:1].numpy()})[0] - expected).max() < 1e-4


def test_colour_head_changes_colours_per_image():
    torch.manual_seed(0)
    student = create_model("mobile_resnet_9blocks_ngf16_colour")
    torch.nn.init.normal_(student.colour.expand.weight, std=0.1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    features = student.model[:student.down_end](x)
    out = student.colour(x, features)
    assert not torch.allclose(out, x) and out.shape == x.shape


def test_gcompris_photos_join_the_builtin_split_with_licences(monkeypatch):
    from crd_edge.data import builtin
    from crd_edge.data.gcompris import GCOMPRIS_RCC

    if not (GCOMPRIS_RCC / "explore_monuments.rcc").is_file():
        pytest.skip("gcompris-qt-data not installed (scripts/install.sh --with-photos)")
    monkeypatch.setenv(builtin.PHOTOS_ENV, "all")
    builtin._load_all.cache_clear()
    try:
        manifest = builtin.photo_manifest()
        gcompris = [m for m in manifest if m["package"].startswith("gcompris")]
        held = [m for m in gcompris if m["split"] == "test"]
        assert len(gcompris) >= 150 and len(held) >= 25
        assert len({m["file"].split(".rcc:")[0] for m in held}) >= 5  # held-out photos span the activities
        assert sum(bool(m["copyright"]) for m in gcompris) >= 0.9 * len(gcompris)
        assert all(m["licence"] for m in manifest)
        assert len(builtin.split_names()["test"]) == len(held) + len(builtin.BUILTIN_TEST_SOURCES)
    finally:
        builtin._load_all.cache_clear()  # the next user reloads under the restored setting


def test_learning_curve_plots_the_logged_points(tmp_path):
    import json as _json

    from crd_edge.training.curves import curve_points, plot_curve
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": 10, "loss": 1.0}, {"step": 10, "train_l1": 0.2, "train_l1_copy": 0.3, "heldout_psnr": 20.0,
                                         "heldout_psnr_input": 19.0},
            {"step": 20, "train_l1": 0.1, "train_l1_copy": 0.3, "heldout_psnr": 21.0, "heldout_psnr_input": 19.0}]
    metrics.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    assert [p["step"] for p in curve_points(metrics)] == [10, 20]
    out = plot_curve(metrics, tmp_path / "curve.png")
    assert out is not None and out.stat().st_size > 1000
    assert plot_curve(tmp_path / "none.jsonl", tmp_path / "x.png") is None


def test_fewer_training_photos_are_nested_and_leave_the_held_out_split_alone(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (130, 140, 3), dtype=np.uint8)).save(tmp_path / f"p{i:02d}.png")
    full = load_photo_set(tmp_path)
    names = lambda s: {n for n, _ in s.train}  # noqa: E731
    small, larger = full.first_photos(5), full.first_photos(12)
    assert len(small.train) == 5 and len(larger.train) == 12 and names(small) < names(larger) < names(full)
    assert [n for n, _ in small.test] == [n for n, _ in full.test] and full.test
    assert full.first_photos(0) is full and full.first_photos(1000) is full
    assert {m["name"] for m in small.manifest if m["split"] == "train"} == names(small)
    assert "5 of its" in small.description
    # the choice depends on the names only, not on the order the files were read in
    reordered = type(full)(list(reversed(full.train)), full.test, full.description)
    assert names(reordered.first_photos(5)) == names(small)
