"""Tests for crd_edge.data: image reading, transforms, datasets, layouts, built-in photos."""

from __future__ import annotations

import pickle
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torch.utils.data import DataLoader

from crd_edge.data import (
    BUILTIN_SOURCES,
    BUILTIN_TEST_SOURCES,
    AlignedDataset,
    BadImage,
    BuiltinPhotoDataset,
    CropParams,
    ImageFolderDataset,
    SkipCounter,
    UnalignedDataset,
    apply_crop,
    build_dataset,
    builtin_photos,
    builtin_split,
    list_images,
    read_image,
    sample_crop,
    split_names,
)
from crd_edge.data import builtin as builtin_mod
from crd_edge.errors import UserError
from crd_edge.imaging import tensor_from_uint8 as to_tensor
from crd_edge.imaging import tensor_to_uint8 as to_uint8

SIZE, LOAD = 32, 40  # small sizes keep the whole file fast


# ---------------------------------------------------------------- helpers and fixtures


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Six small real photos (from the built-in set), 48x64, distinct content."""
    out = []
    for p in builtin_photos()[:6]:
        out.append(np.asarray(Image.fromarray(p.image).resize((64, 48), Image.BICUBIC)))
    return out


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def png_rgb16(path: Path, rgb: np.ndarray) -> Path:
    """Write a 48-bit (16 bits per channel) RGB PNG by hand: Pillow cannot write one."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def truncated_jpeg(path: Path, arr: np.ndarray) -> Path:
    save(path, arr, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture()
def messy_folder(tmp_path: Path, photos: list[np.ndarray]) -> Path:
    """A folder with 6 good images in various modes and 3 bad files (one per reason)."""
    d = tmp_path / "messy"
    save(d / "a_photo.jpg", photos[0], quality=95)
    save(d / "b_photo.PNG", photos[1])  # upper-case extension still counts
    Image.fromarray(photos[2]).convert("L").save(d / "c_gray.png")
    rgba = np.dstack([photos[3], np.full(photos[3].shape[:2], 128, np.uint8)])
    save(d / "d_rgba.png", rgba)
    save(d / "e_gray16.png", (photos[4][..., 0].astype(np.uint16) * 257))
    Image.fromarray(photos[5]).convert("P").save(d / "f_palette.gif")
    truncated_jpeg(d / "x_truncated.jpg", photos[0])
    (d / "y_not_an_image.png").write_text("this is not a PNG")
    save(d / "z_tiny.png", photos[0][:10, :10])
    (d / "notes.txt").write_text("ignored: not an image extension")
    return d


# ---------------------------------------------------------------- images.py


def test_truncated_images_are_not_loaded_silently() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_read_image_converts_modes(tmp_path: Path, photos: list[np.ndarray]) -> None:
    gray = save(tmp_path / "g.png", photos[0][..., 1])
    out = read_image(gray)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == photos[0][..., 1]).all()

    rgba = np.dstack([photos[1], np.zeros((48, 64), np.uint8)])
    rgba[:, :32, 3] = 255  # left half opaque, right half fully transparent
    out = read_image(save(tmp_path / "a.png", rgba))
    assert (out[:, :32] == photos[1][:, :32]).all() and (out[:, 32:] == 255).all()

    cmyk = tmp_path / "c.jpg"
    Image.fromarray(photos[2]).convert("CMYK").save(cmyk, quality=98)
    out = read_image(cmyk)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - photos[2]).mean() < 8

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was rotated, show the photo turned 90 degrees
    Image.fromarray(photos[3]).save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").shape == (64, 48, 3)

    pal = tmp_path / "pal.gif"
    Image.fromarray(photos[3]).convert("P").save(pal)
    assert read_image(pal).shape == (48, 64, 3)


def test_read_image_scales_16_bit(tmp_path: Path) -> None:
    values = np.array([0, 128, 129, 257, 25700, 32768, 65535], np.uint16)
    arr = np.tile(values, (40, 6))  # 40 x 42
    out = read_image(save(tmp_path / "g16.png", arr))
    expect = np.round(values / 257).astype(np.uint8)  # [0, 0, 1, 1, 100, 128, 255]
    assert (out[0, : len(values), 0] == expect).all() and (out[..., 0] == out[..., 2]).all()

    rgb = np.zeros((40, 40, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 25900, 0
    out = read_image(png_rgb16(tmp_path / "c48.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (40, 40, 3)
    assert np.abs(out[0, 0].astype(int) - np.round(rgb[0, 0] / 257)).max() <= 1
    assert tuple(out[0, 0]) in ((255, 101, 0), (255, 100, 0))


def test_read_image_rejects_bad_files(tmp_path: Path, photos: list[np.ndarray]) -> None:
    cases = {
        truncated_jpeg(tmp_path / "t.jpg", photos[0]): "truncated",
        tmp_path / "fake.png": "not_an_image",
        save(tmp_path / "tiny.png", photos[0][:10, :10]): "too_small",
        tmp_path / "missing.jpg": "unreadable",
    }
    (tmp_path / "fake.png").write_text("hello")
    for path, reason in cases.items():
        with pytest.raises(BadImage) as info:
            read_image(path)
        assert info.value.reason == reason and info.value.path == path
        assert not isinstance(info.value, UserError)
    assert read_image(tmp_path / "tiny.png", min_size=10).shape == (10, 10, 3)


def test_list_images_sorted_case_insensitive_non_recursive(messy_folder: Path) -> None:
    (messy_folder / "sub").mkdir()
    save(messy_folder / "sub" / "inner.jpg", np.zeros((40, 40, 3), np.uint8))
    (messy_folder / "._a_photo.jpg").write_bytes(b"macOS metadata")
    names = [p.name for p in list_images(messy_folder)]
    assert names == sorted(names) and "b_photo.PNG" in names
    assert "inner.jpg" not in names and "notes.txt" not in names and "._a_photo.jpg" not in names
    assert len(names) == 9


def test_skip_counter() -> None:
    c = SkipCounter()
    assert c.summary() == "skipped 0 files" and c.total == 0
    c.add("truncated", "/x/a.jpg")
    c.add("truncated", "/x/b.jpg")
    c.add("too_small")
    assert c.as_dict() == {"too_small": 1, "truncated": 2} and len(c) == 3
    assert c.summary() == "skipped 3 files: 1 too_small, 2 truncated (a.jpg, b.jpg)"


# ---------------------------------------------------------------- transforms.py


def test_tensor_conversions_round_trip() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    t = to_tensor(img)
    assert t.shape == (3, 16, 16) and t.dtype == torch.float32
    assert t.min() == -1 and t.max() == 1
    assert (to_uint8(t) == img).all()
    assert (to_uint8(torch.full((3, 2, 2), 5.0)) == 255).all()
    assert (to_uint8(torch.full((3, 2, 2), -5.0)) == 0).all()
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 4, 5, 3)


def test_sample_crop_uses_only_the_given_rng() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    a = [sample_crop(LOAD, SIZE, random.Random(7)) for _ in range(3)]
    assert random.random() == expected  # global RNG untouched
    assert a[0] == a[1] == a[2]
    crops = {sample_crop(LOAD, SIZE, random.Random(s)) for s in range(200)}
    assert all(0 <= c.top <= LOAD - SIZE and 0 <= c.left <= LOAD - SIZE for c in crops)
    assert {c.flip for c in crops} == {True, False}
    with pytest.raises(ValueError):
        sample_crop(SIZE, LOAD, random.Random(0))


def test_apply_crop_any_leading_dims() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = CropParams(top=1, left=2, flip=True)
    batch = apply_crop(x, p, 4)
    assert batch.shape == (2, 3, 4, 4)
    assert torch.equal(batch[1], apply_crop(x[1], p, 4))
    assert torch.equal(batch[0, 0, 0], x[0, 0, 1, 2:6].flip(0))
    with pytest.raises(ValueError):
        apply_crop(x, CropParams(6, 0, False), 4)


# ---------------------------------------------------------------- datasets.py


def test_folder_dataset_skips_bad_files_by_reason(messy_folder: Path) -> None:
    ds = ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD)
    assert ds.skipped.as_dict() == {"not_an_image": 1, "too_small": 1, "truncated": 1}
    assert len(ds) == 6
    for i in range(len(ds)):
        s = ds[i]
        assert s["A"].shape == (3, SIZE, SIZE) and s["A"].dtype == torch.float32
        assert -1 <= s["A"].min() and s["A"].max() <= 1
        assert s["index"] == i and isinstance(s["flip"], bool) and isinstance(s["top"], int)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["A"].shape == (4, 3, SIZE, SIZE) and batch["flip"].dtype == torch.bool


def test_late_failure_is_counted_and_replaced(messy_folder: Path) -> None:
    ds = ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD)
    ds.files.paths[2].write_bytes(b"broken after the check")
    samples = list(ds)  # must not raise
    assert len(samples) == len(ds) and samples[2]["index"] == 3
    assert ds.skipped.as_dict()["not_an_image"] == 2
    with pytest.raises(BadImage):
        ds.load_full(2)
    assert ds.skipped.total == 4  # counted once, not once per access


def test_datasets_pickle_for_worker_processes(tmp_path: Path, messy_folder: Path,
                                             photos: list[np.ndarray]) -> None:
    # DataLoader workers started with spawn/forkserver receive the dataset pickled.
    datasets = [
        ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD),
        UnalignedDataset(make_unaligned(tmp_path / "cyc", photos), size=SIZE, load_size=LOAD),
        AlignedDataset(make_aligned(tmp_path / "pix", photos), size=SIZE, load_size=LOAD),
    ]
    for ds in datasets:
        copy = pickle.loads(pickle.dumps(ds))
        assert torch.equal(copy[1]["A"], ds[1]["A"])
        assert copy.skipped.as_dict() == ds.skipped.as_dict()


def test_crops_reproduce_by_seed_epoch_index(messy_folder: Path) -> None:
    def params(ds, i):
        s = ds[i]
        return s["top"], s["left"], s["flip"]

    a = ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD, seed=3)
    b = ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD, seed=3)
    torch.manual_seed(0)
    random.seed(0)
    first = [params(a, i) for i in range(len(a))]
    torch.manual_seed(1)
    random.seed(1)  # global RNG state must not matter
    assert first == [params(b, i) for i in range(len(b))]
    assert torch.equal(a[1]["A"], b[1]["A"])
    b.set_epoch(1)
    assert first != [params(b, i) for i in range(len(b))]
    b.set_epoch(0)
    assert first == [params(b, i) for i in range(len(b))]


def test_load_full_then_crop_equals_sample(messy_folder: Path) -> None:
    ds = ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD, seed=5)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            full = ds.load_full(s["index"])
            assert full.shape == (3, LOAD, LOAD)
            p = CropParams(s["top"], s["left"], s["flip"])
            assert torch.equal(apply_crop(full, p, SIZE), s["A"])
    test = ImageFolderDataset(messy_folder, size=SIZE, load_size=LOAD, train=False)
    s = test[0]
    assert (s["top"], s["left"], s["flip"]) == (0, 0, False)
    assert torch.equal(test.load_full(0), s["A"])


def test_small_images_are_upsampled(tmp_path: Path, photos: list[np.ndarray]) -> None:
    save(tmp_path / "small" / "s.png", photos[0][:40, :50])
    ds = ImageFolderDataset(tmp_path / "small", size=64, load_size=72)
    assert ds[0]["A"].shape == (3, 64, 64)


def make_unaligned(root: Path, photos: list[np.ndarray]) -> Path:
    for i in range(3):
        save(root / "trainA" / f"a{i}.jpg", photos[i])
        save(root / "trainB" / f"b{i}.png", photos[3 + i])
    save(root / "testA" / "t.jpg", photos[0])
    return root


def test_unaligned_dataset(tmp_path: Path, photos: list[np.ndarray]) -> None:
    root = make_unaligned(tmp_path / "cyc", photos)
    (root / "trainB" / "bad.jpg").write_bytes(b"junk")
    ds = UnalignedDataset(root, size=SIZE, load_size=LOAD)
    assert len(ds) == 3 and ds.skipped.as_dict() == {"not_an_image": 1}
    s = ds[1]
    assert s["A"].shape == s["B"].shape == (3, SIZE, SIZE)
    again = UnalignedDataset(root, size=SIZE, load_size=LOAD)[1]
    assert s["B_index"] == again["B_index"] and torch.equal(s["B"], again["B"])
    pb = CropParams(s["B_top"], s["B_left"], s["B_flip"])
    assert torch.equal(apply_crop(ds.load_full(s["B_index"], "B"), pb, SIZE), s["B"])
    test = UnalignedDataset(root, phase="test", size=SIZE, load_size=LOAD)
    assert not test.train and "B" not in test[0]  # no testB/: source images only


def make_aligned(root: Path, photos: list[np.ndarray], same: bool = False) -> Path:
    for i in range(3):
        a = photos[i][:, :48]  # square halves, as in pix2pix data sets: 96x48 pairs
        b = a if same else photos[i + 3][:, :48]
        save(root / "train" / f"{i}.jpg", np.concatenate([a, b], axis=1), quality=98)
    (root / "val").mkdir()
    return root


def test_aligned_pairs_share_the_crop(tmp_path: Path, photos: list[np.ndarray]) -> None:
    same = AlignedDataset(make_aligned(tmp_path / "same", photos, same=True),
                          size=SIZE, load_size=LOAD)
    for i in range(len(same)):
        s = same[i]
        assert torch.allclose(s["A"], s["B"], atol=0.2)  # same content, jpeg seam aside
    ds = AlignedDataset(make_aligned(tmp_path / "pix", photos), size=SIZE, load_size=LOAD)
    s = ds[2]
    p = CropParams(s["top"], s["left"], s["flip"])
    assert torch.equal(apply_crop(ds.load_full(2, "A"), p, SIZE), s["A"])
    assert torch.equal(apply_crop(ds.load_full(2, "B"), p, SIZE), s["B"])
    swapped = AlignedDataset(tmp_path / "pix", size=SIZE, load_size=LOAD, direction="BtoA")[2]
    assert torch.equal(swapped["A"], s["B"]) and torch.equal(swapped["B"], s["A"])


def test_layout_detection(tmp_path: Path, photos: list[np.ndarray], messy_folder: Path) -> None:
    cyc = make_unaligned(tmp_path / "cyc", photos)
    pix = make_aligned(tmp_path / "pix", photos)
    kw = {"size": SIZE, "load_size": LOAD}
    assert isinstance(build_dataset(str(cyc), **kw), UnalignedDataset)
    assert isinstance(build_dataset(pix, **kw), AlignedDataset)
    assert isinstance(build_dataset(messy_folder, **kw), ImageFolderDataset)
    assert isinstance(build_dataset(cyc / "trainA", layout="folder", **kw), ImageFolderDataset)
    assert isinstance(build_dataset(None, **kw), BuiltinPhotoDataset)
    test = build_dataset("builtin", phase="test", **kw)
    assert isinstance(test, BuiltinPhotoDataset) and test.split == "test" and not test.train
    # layout="aligned" forces pix2pix even for images that are not 2:1
    save(tmp_path / "sq" / "train" / "0.png", photos[0])
    assert isinstance(build_dataset(tmp_path / "sq", layout="aligned", **kw), AlignedDataset)


@pytest.mark.parametrize(
    ("setup", "layout", "expect"),
    [
        ("empty", "auto", ["empty", "no images", "trainA/", "folder of images"]),
        ("missing", "auto", ["missing", "does not exist"]),
        ("mislaid", "auto", ["mislaid", "cannot tell", "photos/", "trainA/"]),
        ("square_train", "auto", ["square_train", "twice as wide"]),
        ("empty_trainA", "auto", ["trainA", "no images"]),
        ("all_bad", "auto", ["all_bad", "none of the 2", "not_an_image"]),
        ("no_train_dir", "aligned", ["no_train_dir", "no train/"]),
        ("empty", "sideways", ["sideways", "auto, builtin, folder, unaligned, aligned"]),
    ],
)
def test_user_errors(tmp_path: Path, photos, setup: str, layout: str, expect: list[str]) -> None:
    root = tmp_path / setup
    if setup != "missing":
        root.mkdir()
    if setup == "mislaid":
        save(root / "photos" / "a.jpg", photos[0])
    if setup == "square_train":
        save(root / "train" / "a.jpg", photos[0])
    if setup == "empty_trainA":
        (root / "trainA").mkdir()
    if setup == "all_bad":
        (root / "a.jpg").write_text("x")
        (root / "b.png").write_text("y")
    if setup == "no_train_dir":
        (root / "test").mkdir()
    with pytest.raises(UserError) as info:
        build_dataset(root, layout=layout, size=SIZE, load_size=LOAD)
    message = str(info.value)
    assert "\n" not in message
    for part in expect:
        assert part in message, message


def test_bad_sizes_are_user_errors(messy_folder: Path) -> None:
    with pytest.raises(UserError, match="load_size"):
        ImageFolderDataset(messy_folder, size=64, load_size=32)


# ---------------------------------------------------------------- builtin.py


def test_builtin_split_by_source() -> None:
    photos = builtin_photos()
    names = [p.name for p in photos]
    assert len(names) == len(set(names)) >= 10
    assert {"motorcycle_left", "motorcycle_right", "china", "flower"} <= set(names)
    for p in photos:
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and p.image.shape[2] == 3
    train_src = {p.source for p in builtin_split("train")}
    test_src = {p.source for p in builtin_split("test")}
    assert not train_src & test_src and test_src == set(BUILTIN_TEST_SOURCES)
    assert train_src | test_src == {p.source for p in photos} <= set(BUILTIN_SOURCES)
    assert split_names()["test"] == [p.name for p in builtin_split("test")]
    assert builtin_photos()[0].image is photos[0].image  # cached in-process
    with pytest.raises(UserError):
        builtin_split("val")


def test_builtin_loader_failure_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken():
        raise OSError("needs the network")

    monkeypatch.setitem(builtin_mod._LOADERS, "broken", broken)
    builtin_mod._load_all.cache_clear()
    try:
        assert "broken" not in {p.source for p in builtin_photos()}
        assert len(builtin_photos()) >= 10
    finally:
        monkeypatch.undo()
        builtin_mod._load_all.cache_clear()


def test_builtin_dataset() -> None:
    ds = BuiltinPhotoDataset("train", size=SIZE, load_size=LOAD)
    assert len(ds) == len(builtin_split("train")) and ds.skipped.total == 0
    s = ds[len(ds) - 1]
    p = CropParams(s["top"], s["left"], s["flip"])
    assert torch.equal(apply_crop(ds.load_full(s["index"]), p, SIZE), s["A"])
    test = BuiltinPhotoDataset("test", size=SIZE)
    assert test[0]["A"].shape == (3, SIZE, SIZE) and test.load_full(0).shape == (3, SIZE, SIZE)


def test_an_image_over_the_pixel_limit_is_downscaled_once_and_kept(tmp_path, monkeypatch):
    from PIL import Image

    from crd_edge.data import images as images_module
    from crd_edge.data.images import ImageFiles, SkipCounter, read_image

    monkeypatch.setattr(images_module, "MAX_PIXELS", 10_000)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    for name, (h, w) in (("big.png", (200, 300)), ("big.jpg", (1500, 2000))):
        img = read_image(tmp_path / name)
        assert img.shape[0] * img.shape[1] <= 10_000 and abs(img.shape[1] / img.shape[0] - w / h) < 0.05, name
    assert read_image(tmp_path / "small.png").shape == (40, 40, 3)  # under the limit: untouched

    calls = []

    def reader(path):
        calls.append(path.name)
        return read_image(path)
    files = ImageFiles(tmp_path, reader, SkipCounter())
    assert sorted(calls) == ["big.jpg", "big.png", "small.png"]  # the check decodes each once
    for _ in range(3):
        for j in range(len(files)):
            files.read(j)
    assert sorted(calls) == ["big.jpg", "big.png", "small.png", "small.png", "small.png", "small.png"]


def test_fifos_links_and_folders_named_as_images_are_counted_not_read(tmp_path):
    import os

    from crd_edge.data.images import ImageFiles, SkipCounter, read_image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block the reader for ever
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "folder.jpg").mkdir()
    skipped = SkipCounter()
    files = ImageFiles(tmp_path, read_image, skipped)
    assert [p.name for p in files.paths] == ["good.png"]
    assert skipped.as_dict() == {"unreadable": 4}
