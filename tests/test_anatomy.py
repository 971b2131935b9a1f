"""The colour-map arithmetic behind ``python -m research.anatomy``."""

import pytest
import torch
from PIL import Image

from research.anatomy import (IDENTITY, apply_colour_maps, colour_map_mse, colour_moments,
                                          bottleneck_stats, fit_colour_maps, fit_predictor, gaussian_blur,
                                          last_residual_block, main, tiled_colour_maps)
from crd_edge.models.resnet import ResidualBlock, ResnetGenerator


def random_maps(n, gen, scale=0.3):
    return IDENTITY + scale * torch.randn(n, 3, 4, generator=gen, dtype=torch.float64)


def test_least_squares_recovers_each_views_colour_map():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 16, generator=gen, dtype=torch.float64) - 0.5
    maps = random_maps(5, gen, scale=0.1)
    y = apply_colour_maps(x, maps)
    unclamped = (y.abs() < 1).all()  # the fit is exact only where nothing was clamped
    assert unclamped
    fitted = fit_colour_maps(colour_moments(x, y), ridge=0.0)
    assert torch.allclose(fitted, maps, atol=1e-6)
    # A flat view says nothing about the matrix: the ridge keeps the identity's, and the offset fits.
    flat = torch.full((1, 3, 8, 8), 0.2, dtype=torch.float64)
    shrunk = fit_colour_maps(colour_moments(flat, flat + 0.1))
    assert torch.allclose(apply_colour_maps(flat, shrunk), flat + 0.1, atol=1e-3)
    assert torch.allclose(shrunk[0, :, :3], torch.eye(3, dtype=torch.float64), atol=0.1)
    assert colour_map_mse(fitted, colour_moments(x, y)).max() < 1e-10


def test_map_error_from_moments_equals_the_pixel_error():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.rand(4, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    maps = random_maps(4, gen, scale=0.1)
    n = x.shape[0]
    direct = ((maps @ torch.cat([x.reshape(n, 3, -1), torch.ones(n, 1, 64, dtype=x.dtype)], 1)).reshape(x.shape) - y)
    assert torch.allclose(colour_map_mse(maps, colour_moments(x, y)), direct.pow(2).mean((1, 2, 3)))
    assert torch.allclose(colour_map_mse(IDENTITY.expand(n, 3, 4), colour_moments(x, y)), (x - y).pow(2).mean((1, 2, 3)))


def test_tiled_maps_follow_a_change_that_differs_per_tile():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 16, generator=gen, dtype=torch.float64) - 0.5
    y = x.clone()
    y[:, :, :8, :8] = x[:, :, :8, :8] * 0.5 + 0.2  # one tile of four gets another map
    per_tile = tiled_colour_maps(x, y, 2, ridge=1e-9)
    whole = apply_colour_maps(x, fit_colour_maps(colour_moments(x, y)))
    assert (per_tile - y).abs().max() < 1e-3 < (whole - y).abs().max()


def test_blur_keeps_flat_images_and_smooths_detail():
    flat = torch.full((1, 3, 12, 12), 0.25, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(flat, 0.7), flat)
    checker = (torch.arange(12)[:, None] + torch.arange(12)[None]) % 2 * 2.0 - 1
    noisy = checker.expand(1, 3, 12, 12).double()
    assert gaussian_blur(noisy, 0.7).abs().max() < 0.5 * noisy.abs().max()


def test_predictor_learns_a_colour_map_that_a_feature_explains():
    # Each view's target is the input scaled by a factor that its one feature states: the
    # predictor must learn the map from the feature, and do better than copying on new views.
    gen = torch.Generator().manual_seed(3)

    def views(n):
        s = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
        x = torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64) - 0.5
        return x, x * s[:, None, None, None], s[:, None]

    x, y, f = views(256)
    predict = fit_predictor(f.float(), colour_moments(x, y), steps=1500)
    xv, yv, fv = views(64)
    held = colour_moments(xv, yv)
    assert colour_map_mse(predict(fv.float()), held).mean() < 0.1 * colour_map_mse(IDENTITY.expand(64, 3, 4), held).mean()


def test_a_photo_set_without_held_out_photos_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "photos" / "trainA"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(torch.randint(0, 255, (140, 140, 3), dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--set", f"data.data={tmp_path / 'photos'}"])
    assert exit_info.value.code == 2 and "held-out" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bottleneck_features_are_read_after_the_last_residual_block():
    net = ResnetGenerator(ngf=4, n_blocks=2).eval()
    last = last_residual_block(net)
    assert isinstance(net.model[last], ResidualBlock) and not isinstance(net.model[last + 1], ResidualBlock)
    assert last_residual_block(None) is None and last_residual_block(torch.nn.Conv2d(3, 3, 1)) is None
    stats = bottleneck_stats(net, torch.rand(3, 3, 32, 32) * 2 - 1, batch=2)
    width = 4 * 4  # the residual blocks' width: 4 x ngf; a mean and a deviation per channel
    assert stats.shape == (3, 2 * width) and (stats[:, width:] > 0).all()
