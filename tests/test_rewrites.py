"""Each export rewrite computes the same function as the layer it replaces (to float rounding)."""

import pytest
import torch
from torch import nn

from crd_edge.export.rewrites import ReflectPadSlices, apply_rewrites, convtranspose_k3_to_k4
from crd_edge.export.verify import verification_images
from crd_edge.models import create_model


@pytest.mark.parametrize("cin,cout,groups,bias", [(8, 4, 1, True), (6, 6, 3, False), (1, 2, 1, True)])
def test_k3_transposed_conv_equals_its_zero_extended_k4(cin, cout, groups, bias):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, groups=groups, bias=bias).double()
    new = convtranspose_k3_to_k4(layer)
    assert new.kernel_size == (4, 4) and new.output_padding == (0, 0) and new.weight.dtype == torch.float64
    for shape in [(2, cin, 5, 7), (1, cin, 1, 1), (1, cin, 16, 16)]:
        x = torch.randn(shape, dtype=torch.float64)
        out = layer(x)
        assert out.shape[-2:] == (2 * shape[2], 2 * shape[3])
        torch.testing.assert_close(new(x), out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("padding", [(1, 1, 1, 1), (3, 3, 3, 3), (2, 0, 1, 3), (0, 0, 0, 0)])
def test_reflect_pad_from_slices_equals_reflection_pad(padding):
    x = torch.randn(2, 3, 9, 11, requires_grad=True)
    torch.testing.assert_close(ReflectPadSlices(padding)(x), nn.ReflectionPad2d(padding)(x), rtol=0, atol=0)
    # Gradients flow the same way too (each input pixel collects from its mirror images).
    grad = torch.randn(2, 3, 9 + padding[2] + padding[3], 11 + padding[0] + padding[1])
    (a,) = torch.autograd.grad(ReflectPadSlices(padding)(x), x, grad)
    (b,) = torch.autograd.grad(nn.ReflectionPad2d(padding)(x), x, grad)
    torch.testing.assert_close(a, b)


def test_reflect_pad_exports_to_slice_and_concat_only(tmp_path):
    onnx = pytest.importorskip("onnx")
    torch.onnx.export(ReflectPadSlices((3, 3, 3, 3)), (torch.zeros(1, 2, 8, 8),), str(tmp_path / "p.onnx"),
                      opset_version=17, dynamo=False)
    assert {n.op_type for n in onnx.load(str(tmp_path / "p.onnx")).graph.node} <= {"Slice", "Concat", "Constant"}


def test_rewritten_paper_generators_match_on_real_photos():
    photos = verification_images(64)
    for name, kwargs in [("mobile_resnet_9blocks", {"ngf": 8}), ("resnet_9blocks", {"ngf": 8, "n_blocks": 2})]:
        torch.manual_seed(0)
        model = create_model(name, **kwargs).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        rewritten, applied = apply_rewrites(model, ["convtranspose_k3_to_k4", "reflect_pad_to_slices"])
        blocks = 9 if name.startswith("mobile") else 2
        assert applied == [{"name": "convtranspose_k3_to_k4", "layers": 2},
                           {"name": "reflect_pad_to_slices", "layers": 2 + 2 * blocks}]
        assert not any(isinstance(m, (nn.ReflectionPad2d,)) for m in rewritten.modules())
        with torch.no_grad():
            torch.testing.assert_close(rewritten(photos), model(photos), rtol=0, atol=1e-5)
        # The original model is untouched.
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert any(isinstance(m, nn.ReflectionPad2d) for m in model.modules())


def test_rewrites_that_match_nothing_are_not_recorded():
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample="nearest", padding="zero")
    assert apply_rewrites(model, ["convtranspose_k3_to_k4", "reflect_pad_to_slices"])[1] == []


@pytest.mark.parametrize("out_ch,kernel,r,pad", [(3, 7, 4, 0), (1, 3, 2, 0), (4, 5, 4, 0), (3, 7, 4, 3), (3, 5, 2, 1)])
def test_narrow_conv_equals_its_space_to_depth_form(out_ch, kernel, r, pad):
    from crd_edge.export.rewrites import SpaceToDepthConv
    torch.manual_seed(0)
    conv = nn.Conv2d(6, out_ch, kernel, padding=pad).double()  # pad > 0: zero padding
    new = SpaceToDepthConv(conv, r)
    assert new.strided.out_channels == out_ch * r * r and new.strided.stride == (r, r)
    for size in (kernel - 1 - 2 * pad + 4 * r, kernel - 1 - 2 * pad + 8 * r, kernel + 2):  # the last one falls back
        x = torch.randn(2, 6, size, size + r, dtype=torch.float64)
        torch.testing.assert_close(new(x), conv(x), rtol=0, atol=1e-12)


def test_space_to_depth_rewrite_on_a_generator_and_in_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample="convt4", input_skip=True).eval()
    rewritten, applied = apply_rewrites(model, ["narrow_conv_to_space_to_depth"])
    assert applied == [{"name": "narrow_conv_to_space_to_depth", "layers": 1}]  # only the RGB output conv
    photos = verification_images(64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(photos), model(photos), rtol=0, atol=1e-5)
    torch.onnx.export(rewritten, (photos[:1],), str(tmp_path / "m.onnx"), opset_version=17, dynamo=False)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert "DepthToSpace" in {n.op_type for n in graph.node}


def test_space_to_depth_rewrite_on_a_zero_padded_generator():
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample="convt4", input_skip=True,
                         padding="zero", norm="none").eval()
    rewritten, applied = apply_rewrites(model, ["narrow_conv_to_space_to_depth"])
    assert applied == [{"name": "narrow_conv_to_space_to_depth", "layers": 1}]
    photos = verification_images(64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(photos), model(photos), rtol=0, atol=1e-5)
