import random

import torch

from crd_edge.data.jitter import apply_jitter, jitter_params


def test_identity_parameters_change_nothing():
    x = torch.rand(3, 8, 8) * 2 - 1
    torch.testing.assert_close(apply_jitter(x, (1, 1, 1, 0, 0, 0, 1)), x)


def test_closed_form_gain_offset_and_saturation():
    x = torch.full((3, 2, 2), 0.0)  # mid grey: 0.5 in [0, 1]
    y = apply_jitter(x, (1.2, 1.0, 0.8, 0.1, 0.0, -0.1, 3.0))  # saturation leaves grey alone
    expected = torch.tensor([0.5 * 1.2 + 0.1, 0.5, 0.5 * 0.8 - 0.1]) * 2 - 1
    torch.testing.assert_close(y[:, 0, 0], expected)
    colour = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1).expand(3, 2, 2)  # pure red
    desaturated = apply_jitter(colour, (1, 1, 1, 0, 0, 0, 0.0))
    torch.testing.assert_close(desaturated[:, 0, 0], torch.full((3,), 1 / 3) * 2 - 1)


def test_parameters_reproducible_and_in_range():
    a = jitter_params(random.Random("jitter/0/3/5"), 0.3)
    assert a == jitter_params(random.Random("jitter/0/3/5"), 0.3)
    assert all(0.7 <= g <= 1.3 for g in a[:3]) and all(-0.15 <= o <= 0.15 for o in a[3:6])
    y = apply_jitter(torch.rand(3, 4, 4) * 2 - 1, a)
    assert y.min() >= -1 and y.max() <= 1
