"""The teacher-output cache: exact views, the full-image approximation, and its bookkeeping."""

import pytest
import torch

from crd_edge.data import build_dataset
from crd_edge.models import create_model
from crd_edge.training.teacher_cache import TeacherOutputCache


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    model = create_model("resnet_9blocks", ngf=4, n_blocks=1).eval()
    return lambda x: model(x).detach()


def _batch(ds, n=4):
    return torch.utils.data.default_collate([ds[i] for i in range(n)])


def test_exact_cache_equals_running_the_teacher(teacher):
    ds = build_dataset(None, "builtin", "train", size=64, load_size=80, seed=0)
    cache = TeacherOutputCache(teacher, ds.load_full, torch.device("cpu"))
    batch = _batch(ds)
    torch.testing.assert_close(cache.targets(batch, 64), teacher(batch["A"]), atol=2e-3, rtol=0)  # fp16 storage
    assert cache.teacher_calls == 4
    cache.targets(batch, 64)
    assert cache.teacher_calls == 4  # second time: all hits

    restored = TeacherOutputCache(teacher, ds.load_full, torch.device("cpu"))
    restored.load_state_dict(cache.state_dict())
    torch.testing.assert_close(restored.targets(batch, 64), cache.targets(batch, 64))
    assert restored.teacher_calls == 0


def test_full_image_mode_is_exact_without_crops_including_flips(teacher):
    ds = build_dataset(None, "builtin", "train", size=64, load_size=64, seed=3)
    batch = _batch(ds, 6)
    assert batch["flip"].any() and not batch["flip"].all()  # both orientations covered
    cache = TeacherOutputCache(teacher, ds.load_full, torch.device("cpu"), full_image=True)
    torch.testing.assert_close(cache.targets(batch, 64), teacher(batch["A"]), atol=2e-3, rtol=0)


def test_full_image_mode_crops_the_whole_image_output(teacher):
    ds = build_dataset(None, "builtin", "train", size=48, load_size=64, seed=1)
    batch = _batch(ds, 2)
    cache = TeacherOutputCache(teacher, ds.load_full, torch.device("cpu"), full_image=True)
    targets = cache.targets(batch, 48)
    for i in range(2):
        full = ds.load_full(int(batch["index"][i]))
        flip = bool(batch["flip"][i])
        out = teacher((full.flip(-1) if flip else full)[None])[0]
        out = out.flip(-1) if flip else out
        top, left = int(batch["top"][i]), int(batch["left"][i])
        expected = out[:, top:top + 48, left:left + 48]
        torch.testing.assert_close(targets[i], expected.flip(-1) if flip else expected, atol=2e-3, rtol=0)
