"""Every registered model (timm style) plus the counts of docs/method.md, "Architectures"."""

import pytest
import torch
from torch import nn

from crd_edge.analysis.macs import count_macs
from crd_edge.errors import UserError
from crd_edge.models import LITE_STUDENT, PAPER_STUDENT, create_model, list_models
from crd_edge.models.registry import register_model

# name -> (params, paper GMACs, true GMACs) at 256x256, from docs/method.md, "Architectures".
REFERENCE = {
    "resnet_9blocks": (11_378_179, 56.80, 49.68),
    "mobile_resnet_9blocks_ngf64": (1_987_075, 18.31, 11.27),
    "mobile_resnet_9blocks_ngf16": (137_347, 1.408, 1.006),
    "unet_256": (54_413_955, 18.14, 6.05),
    "unet_256_ngf16": (3_404_451, 1.219, 0.408),
}
SMALL = {"mobile_resnet_9blocks_ngf12": (80_500, 0.858), "mobile_resnet_9blocks_ngf8": (38_700, 0.440)}


@pytest.mark.parametrize("name", list_models("generator"))
def test_generator_shape_and_finite(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    size = 256 if "unet" in name else 64  # U-Net-256 needs 256 (8 downsamplings)
    x = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and y.abs().max() <= 1  # tanh output range


@pytest.mark.parametrize("name", list_models("discriminator"))
def test_discriminator_patch_output(name):
    model = create_model(name).eval()
    cin = model.model[0].in_channels
    with torch.no_grad():
        y = model(torch.zeros(2, cin, 256, 256))
    assert y.shape == (2, 1, 30, 30)  # 70x70 PatchGAN on 256x256


@pytest.mark.parametrize("name,expected", REFERENCE.items())
def test_counts_match_reference(name, expected):
    params, paper, true = expected
    report = count_macs(create_model(name))
    assert report.params == params
    assert report.paper_macs / 1e9 == pytest.approx(paper, abs=0.006 * paper + 0.001)
    assert report.true_macs / 1e9 == pytest.approx(true, abs=0.006 * true + 0.001)


@pytest.mark.parametrize("name,expected", SMALL.items())
def test_small_students(name, expected):
    params, paper = expected
    report = count_macs(create_model(name))
    assert report.params == pytest.approx(params, abs=100)
    assert report.paper_macs / 1e9 == pytest.approx(paper, abs=0.001)


def test_paper_convention_counts_transposed_convs_four_times():
    conv_t = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    report = count_macs(conv_t, (1, 8, 16, 16))
    true = 16 * 16 * 8 * 4 * 9  # every input pixel meets every kernel tap once
    assert report.conv_macs == true
    assert report.paper_macs == 4 * true  # output elements x C_in x k^2


def test_instance_norm_counted_as_four_ops_per_element():
    report = count_macs(nn.InstanceNorm2d(4), (1, 4, 8, 8))
    assert report.conv_macs == 0 and report.norm_ops == 4 * 4 * 8 * 8


@pytest.mark.parametrize("upsample", ["convt3", "convt4", "nearest"])
@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero"])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_student_export_options(upsample, padding, norm):
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample=upsample, padding=padding, norm=norm).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert y.shape == (2, 3, 64, 64) and torch.isfinite(y).all()
    kinds = {type(m) for m in model.modules()}
    assert (nn.ReflectionPad2d in kinds) == (padding == "reflect")
    assert (nn.BatchNorm2d in kinds) == (norm == "batch")
    assert (nn.Upsample in kinds) == (upsample == "nearest")


def test_the_lite_student_is_the_paper_student_made_fusable():
    # Same width and blocks as the paper's student; k4 transposed convs, no normalisation
    # layers, no reflection pads (every layer a conv + bias + ReLU), and the input skip.
    lite, paper = create_model(LITE_STUDENT), create_model(PAPER_STUDENT)
    convt = [m for m in lite.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.kernel_size for m in convt] == [(4, 4), (4, 4)]
    assert lite.crd_spec["kwargs"]["ngf"] == paper.crd_spec["kwargs"]["ngf"] == 16
    kinds = {type(m) for m in lite.modules()}
    assert not kinds & {nn.InstanceNorm2d, nn.BatchNorm2d, nn.ReflectionPad2d}
    assert lite.input_skip and all(m.bias is not None for m in lite.modules() if isinstance(m, nn.Conv2d))
    # the conv layers themselves are the paper student's: same MACs, params + the biases
    conv_macs = count_macs(lite).conv_macs
    assert conv_macs == count_macs(create_model("mobile_resnet_9blocks_ngf16_edge")).conv_macs


def test_registry_rejects_duplicates_and_suggests_names():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet_9blocks", lambda: nn.Identity())
    with pytest.raises(UserError, match="did you mean 'resnet_9blocks'"):
        create_model("resnet_9block")
    with pytest.raises(ValueError, match="upsample"):
        create_model("mobile_resnet_9blocks", upsample="bilinear")


def test_create_model_drops_none_kwargs_and_records_spec():
    model = create_model("mobile_resnet_9blocks", ngf=None, padding="zero")
    assert model.crd_spec == {"name": "mobile_resnet_9blocks",
                              "kwargs": {"ngf": 16, "n_blocks": 9, "mobile": True, "padding": "zero"}}


def test_input_skip_starts_from_the_identity():
    model = create_model("mobile_resnet_9blocks", ngf=8, input_skip=True).eval()
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 32, 32) * 1.9 - 0.95
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, atol=1e-5, rtol=0)  # tanh(0 + atanh(x)) = x


def test_input_skip_equals_tanh_of_body_plus_atanh_of_input():
    # forward uses tanh's addition formula; it must be the same function as its definition,
    # including inputs at and beyond the +-0.999 clamp.
    model = create_model("mobile_resnet_9blocks", ngf=8, input_skip=True).eval().double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2.2 - 1.1
    x[0, :, 0, :4] = torch.tensor([-1.0, 1.0, 0.999, -0.9995], dtype=torch.float64)
    with torch.no_grad():
        xc = x.clamp(-0.999, 0.999)
        expected = torch.tanh(model.model[:-1](xc) + torch.atanh(xc))
        torch.testing.assert_close(model(x), expected, atol=1e-12, rtol=0)
