"""Tests for ``crd-edge data pairs --edges``: edges|photo pairs from a folder of real photos."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crd_edge.data.builtin import builtin_photos
from crd_edge.data.datasets import AlignedDataset, detect_layout, build_dataset
from crd_edge.data.pairs import _name_rank, _test_count, edge_map, make_edge_pairs
from crd_edge.errors import UserError

SIZE = 64


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Five real photos of different shapes and formats, a corrupt JPEG, and a text file."""
    src = tmp_path / "photos"
    src.mkdir()
    for i, photo in enumerate(builtin_photos()[:5]):
        im = Image.fromarray(photo.image)
        im = im.resize((im.width // 4, im.height // 4), Image.BICUBIC)  # keep it quick
        im.save(src / f"{photo.name}.{'png' if i % 2 else 'jpg'}")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("not an image, not counted")
    return src


def halves(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ab = np.asarray(Image.open(path).convert("RGB"))
    return ab[:, : ab.shape[1] // 2], ab[:, ab.shape[1] // 2 :]


def test_pairs_are_written_split_and_counted(photo_folder, tmp_path):
    out = tmp_path / "pairs"
    result = make_edge_pairs(photo_folder, out, size=SIZE, test_fraction=0.2, quiet=True)
    assert (result.train, result.test) == (4, 1)  # 6 image files: 5 photos, 1 corrupt
    assert result.skipped.total == 1 and "broken.jpg" in result.skipped.summary()
    files = sorted((out / "train").iterdir()) + sorted((out / "test").iterdir())
    assert len(files) == 5 and all(f.suffix == ".jpg" for f in files)
    for path in files:
        assert Image.open(path).size == (2 * SIZE, SIZE)
        edges, photo = halves(path)
        dark = (edges.mean(axis=2) < 128).mean()
        assert 0.005 < dark < 0.3, f"{path.name}: {dark:.3f} of the edge panel is dark"
        assert photo.std() > 10  # the B half is the photo, not another edge map


def test_output_is_an_aligned_dataset(photo_folder, tmp_path):
    out = tmp_path / "pairs"
    make_edge_pairs(photo_folder, out, size=SIZE, quiet=True)
    assert detect_layout(out, "train") == "aligned"
    data = build_dataset(out, size=32, load_size=SIZE)
    assert isinstance(data, AlignedDataset)
    sample = data[0]
    # A (edges) is mostly white: in [-1, 1] its mean sits well above the photo's
    assert sample["A"].mean() > 0.5 and sample["A"].mean() > sample["B"].mean()


def test_edge_map_is_black_lines_on_white():
    photo = np.full((64, 64, 3), 30, np.uint8)
    photo[16:48, 16:48] = 220  # one bright square: its outline is the only edge
    edges = edge_map(photo)
    assert edges.shape == (64, 64, 3) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    assert edges[32, 32].tolist() == [255] * 3 and edges[2, 2].tolist() == [255] * 3
    assert (edges[:, :, 0] == 0).sum() > 4 * 24  # the square's four sides


def test_split_is_deterministic_and_keeps_train():
    # make_edge_pairs sends the first _test_count readable files, in _name_rank order, to test.
    files = [Path(f"img_{i:03d}.jpg") for i in range(50)]
    assert sorted(files, key=_name_rank) == sorted(reversed(files), key=_name_rank) != sorted(files)
    assert _test_count(50, 0.1) == 5 and _test_count(2, 0.9) == 1 and _test_count(2, 0.01) == 1
    assert _test_count(50, 0.0) == 0 and _test_count(1, 0.5) == 0  # never all: train/ must exist
    with pytest.raises(UserError, match="--test-fraction"):
        _test_count(50, 1.0)


def test_train_is_never_left_empty(photo_folder, tmp_path):
    src = tmp_path / "two"
    src.mkdir()
    (photo_folder / "broken.jpg").rename(src / "broken.jpg")
    next(photo_folder.glob("*.png")).rename(src / "good.png")
    result = make_edge_pairs(src, tmp_path / "pairs", size=SIZE, test_fraction=0.5, quiet=True)
    assert (result.train, result.test, result.skipped.total) == (1, 0, 1)
    assert [p.name for p in (tmp_path / "pairs").iterdir()] == ["train"]


def test_existing_output_needs_force(photo_folder, tmp_path):
    out = tmp_path / "pairs"
    make_edge_pairs(photo_folder, out, size=SIZE, quiet=True)
    with pytest.raises(UserError, match="--force"):
        make_edge_pairs(photo_folder, out, size=SIZE, quiet=True)
    again = make_edge_pairs(photo_folder, out, size=SIZE, quiet=True, force=True)
    assert again.train + again.test == 5
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_missing_opencv_names_the_extra(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(UserError, match=r"crd-edge\[demo\]"):
        make_edge_pairs(photo_folder, tmp_path / "pairs", size=SIZE, quiet=True)
    assert not (tmp_path / "pairs").exists()


def test_cli_pairs(run_cli, photo_folder, tmp_path):
    out = tmp_path / "pairs"
    code, stdout, err = run_cli("data", "pairs", photo_folder, "--edges", "--out", out,
                                "--size", SIZE, "--quiet")
    assert code == 0, err
    assert "4 train and 1 test" in stdout and "skipped 1 file" in err
    code, stdout, _ = run_cli("data", "pairs", photo_folder, "--edges", "--out", tmp_path / "png",
                              "--size", SIZE, "--format", "png", "--json", "--quiet")
    assert code == 0 and '"skipped": 1' in stdout
    assert all(p.suffix == ".png" for p in (tmp_path / "png" / "train").iterdir())


@pytest.mark.parametrize("args, expected", [
    (["--edges", "--out", "OUT", "--format", "gif"], "--format"),
    (["--edges", "--out", "OUT", "--test-fraction", "1.5"], "--test-fraction"),
])
def test_cli_pairs_errors_exit_2(run_cli, photo_folder, tmp_path, args, expected):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    code, _, err = run_cli("data", "pairs", photo_folder, *args, "--quiet")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_cli_pairs_missing_source_exit_2(run_cli, tmp_path):
    code, _, err = run_cli("data", "pairs", tmp_path / "nowhere", "--edges", "--out", tmp_path / "o")
    assert code == 2 and err.startswith("error: ") and "nowhere" in err
