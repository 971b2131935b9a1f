"""A full disk, injected at the write functions (a real small tmpfs needs root): every write
either completes or leaves the old file and no litter, and the user gets one `error:` line."""

import errno
import json
import os

import pytest
import torch

from crd_edge import _io
from crd_edge._io import (DiskFullError, append_jsonl, atomic_torch_save, atomic_write_text, atomic_write_with,
                          read_jsonl)


def test_append_jsonl_cuts_a_torn_line_back_off(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1})
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_io.os, "write", half_then_full)
    with pytest.raises(DiskFullError, match=f"no space left in {tmp_path}"):
        append_jsonl(path, {"step": 2, "loss": 0.5})
    assert path.read_text() == '{"step": 1}\n'


def test_read_jsonl_skips_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    assert read_jsonl(path) == [{"step": 1}]


def test_atomic_torch_save_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 1}, path)

    def zip_writer_fails(obj, f):  # what torch's zip writer raises when the disk fills
        open(f, "wb").write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file")
    monkeypatch.setattr(torch, "save", zip_writer_fails)
    monkeypatch.setattr(_io.shutil, "disk_usage", lambda p: _Usage(0))
    with pytest.raises(DiskFullError, match="needs more than 100 bytes"):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_other_failures_are_not_reported_as_a_full_disk(tmp_path, monkeypatch):
    def broken(obj, f):
        raise RuntimeError("something else")
    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="something else"):
        atomic_torch_save({}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_concurrent_writers_of_one_file_do_not_collide(tmp_path):
    # Two runs sharing a cache label the same held-out split at once: with one temporary name
    # for both, the second rename found its temporary gone (seen on a GPU machine).
    import threading

    import numpy as np

    from crd_edge.training.heldout import build_heldout

    photos = [("a", np.full((160, 200, 3), 90, np.uint8))]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def label():
        try:
            start.wait()
            for _ in range(10):
                build_heldout(photos, 64, lambda x: 255 - x, tmp_path / "held")
                (tmp_path / "held" / "heldout.npz").unlink(missing_ok=True)  # label again next time
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=label) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    atomic_write_with(tmp_path / "x.npy", lambda fh: np.save(fh, np.arange(3)))
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "held").iterdir()) == []  # no temporaries left


def test_atomic_write_text_on_a_full_disk(tmp_path, monkeypatch):
    (tmp_path / "report.md").write_text("old")
    real_replace = os.replace

    def replace_fails(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_io.os, "replace", replace_fails)
    with pytest.raises(DiskFullError):
        atomic_write_text(tmp_path / "report.md", "new")
    monkeypatch.setattr(_io.os, "replace", real_replace)
    assert (tmp_path / "report.md").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_distill_on_a_full_disk_is_one_error_line(run_cli, tiny_teacher, tmp_path, monkeypatch):
    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    code, out, err = run_cli("distill", "--teacher", tiny_teacher, "--student", "mobile_resnet_9blocks",
                             "--steps", 1, "--size", 64, "--runs-dir", tmp_path, "--name", "full", "--quiet",
                             "--set", "student.kwargs.ngf=8", "--set", "data.views=0",
                             "--set", "data.load_size=64", "--set", "data.test_size=64")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert err.startswith(f"error: no space left in {tmp_path / 'full'}")
    assert not list((tmp_path / "full").glob(".*.tmp"))


def test_distill_refuses_a_disk_too_small_for_its_checkpoints_before_any_step(run_cli, tiny_teacher, tmp_path,
                                                                                 monkeypatch):
    """A run that fills the disk at its last save loses every step before it: the free space the
    checkpoints need is checked first, and nothing is written."""
    import collections
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(_io.shutil, "disk_usage", lambda path: usage(10 << 20, (10 << 20) - 600_000, 600_000))
    code, out, err = run_cli("distill", "--teacher", tiny_teacher, "--student", "mobile_resnet_9blocks",
                             "--steps", 1, "--size", 64, "--runs-dir", tmp_path / "runs", "--name", "tight",
                             "--quiet", "--set", "student.kwargs.ngf=8", "--set", "data.views=0",
                             "--set", "data.load_size=64", "--set", "data.test_size=64")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert err.startswith(f"error: no space left in {tmp_path} (600,000 bytes free; it needs more than ")
    assert not (tmp_path / "runs").exists()


def test_an_enospc_outside_the_atomic_writers_is_one_error_line(monkeypatch, capsys):
    from crd_edge import cli

    def app():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/bench/results.jsonl")
    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("error: no space left on the device writing /data/bench/results.jsonl: "
                                       "free some space, then run the command again\n")


class _Usage:
    def __init__(self, free: int) -> None:
        self.free = free


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "x.jsonl"
    for i in range(3):
        append_jsonl(path, {"i": i})
    assert read_jsonl(path) == [{"i": i} for i in range(3)] == [json.loads(x) for x in path.read_text().splitlines()]


# ------------------------------------------------------------------ hostile inputs: one line


@pytest.fixture
def mismatched_checkpoint(tmp_path):
    """A checkpoint whose student record names ngf=16 while its weights are ngf=8's."""
    from crd_edge.checkpoint import student_record
    from crd_edge.models import create_model

    record = student_record(create_model("mobile_resnet_9blocks", ngf=8), 64)
    record["kwargs"]["ngf"] = 16
    path = tmp_path / "edited.pt"
    atomic_torch_save({"format_version": 1, "student": record}, path)
    return path


@pytest.fixture
def fake_torchscript(tmp_path):
    """A zip laid out like TorchScript (a code/ folder) whose contents are not."""
    import zipfile
    path = tmp_path / "teacher.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("teacher/code/__torch__.py", "not torchscript")
        zf.writestr("teacher/data.pkl", b"\x80\x04junk")
    return path


@pytest.mark.parametrize("command", [
    ["export", "{ckpt}", "--target", "onnx", "--out", "{tmp}/export"],
    ["eval", "{ckpt}", "--limit", "1"],
    ["profile", "{ckpt}"],
    ["distill", "--teacher", "{ckpt}", "--steps", "1", "--runs-dir", "{tmp}/runs"],
])
def test_a_checkpoint_whose_weights_do_not_fit_its_architecture_is_one_line(run_cli, mismatched_checkpoint,
                                                                              tmp_path, command):
    args = [a.format(ckpt=mismatched_checkpoint, tmp=tmp_path) for a in command]
    code, _, err = run_cli(*args)
    assert code == 2, err
    assert err.startswith(f"error: {mismatched_checkpoint}: its weights do not fit the architecture it records")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "export").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", [
    ["distill", "--teacher", "{fake}", "--steps", "1", "--runs-dir", "{tmp}/runs"],
    ["eval", "{fake}", "--limit", "1"],
])
def test_a_zip_disguised_as_torchscript_is_one_line(run_cli, fake_torchscript, tmp_path, command):
    args = [a.format(fake=fake_torchscript, tmp=tmp_path) for a in command]
    code, _, err = run_cli(*args)
    assert code == 2, err
    assert "not a loadable TorchScript file" in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_runs_started_at_once_with_one_name_get_a_folder_each(tmp_path):
    """`distill --name same` twice at once: each claims its folder by creating it (a check and
    then a create would let both pick runs/same and one fail)."""
    import threading

    from crd_edge.training.run_dir import new_run_dir
    start, made = threading.Barrier(8), []

    def claim():
        start.wait()
        made.append(new_run_dir(tmp_path / "runs", "same"))
    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in made) == sorted(["same", *[f"same-{n}" for n in range(2, 9)]])


def test_a_single_photo_trains_and_says_nothing_was_held_out(run_cli, tiny_teacher, tmp_path):
    import cv2
    import numpy as np
    (tmp_path / "one").mkdir()
    cv2.imwrite(str(tmp_path / "one" / "a.jpg"), np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8))
    code, out, err = run_cli("distill", "--teacher", tiny_teacher, "--data", tmp_path / "one", "--student",
                             "mobile_resnet_9blocks", "--steps", 1, "--size", 64, "--runs-dir", tmp_path / "runs",
                             "--name", "one", "--quiet", "--set", "student.kwargs.ngf=8", "--set", "data.views=16",
                             "--set", "data.load_size=64", "--set", "data.test_size=64")
    assert code == 0, err
    report = (tmp_path / "runs" / "one" / "report.md").read_text()
    assert "1 training image, 0 held-out" in report and "No held-out images: fidelity not scored." in report
