"""Run one target's conversion in a child process, for converters that can abort the whole
process (the TFLite converter calls abort() on some failures, a full disk among them): a crash
then costs that artifact, not the export of every later target, the summary and the manifest.

The child is spawned, not forked: a fork of a process whose torch and OpenMP thread pools are
running can deadlock. It imports the target module again (a few seconds), receives the job
pickled, writes the artifact to the same path and sends back the details or the error.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import tempfile
import traceback
from pathlib import Path

from crd_edge._io import DiskFullError, is_nearly_full
from crd_edge.errors import UserError


def export_in_child(module_name: str, job, path: Path) -> dict:
    """``importlib.import_module(module_name).export(job, path)`` in a spawned child. What the
    converter prints (TensorFlow's and absl's start-up lines, torchao's missing CUDA kernels,
    deprecation warnings: dozens of lines per artifact) goes to a log file, kept and named only
    when the child crashes, so the export table stays readable."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    fd, log_name = tempfile.mkstemp(prefix="crd-edge-export-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    child = context.Process(target=_child, args=(module_name, job, path, send, log), name="crd-edge-export",
                            daemon=True)
    child.start()
    send.close()  # the child holds the only writing end: EOF once it exits
    try:
        outcome = receive.recv()
    except EOFError:  # it died without a word: abort(), a signal, the OOM killer
        outcome = None
    finally:
        child.join()
        receive.close()
    if outcome is None:
        if is_nearly_full(path.parent):
            log.unlink(missing_ok=True)
            raise DiskFullError(path.parent)
        raise UserError(f"the converter crashed (exit {child.exitcode}) writing {path.name} (its output: {log}); "
                        "the other targets are not affected")
    log.unlink(missing_ok=True)
    kind, value = outcome
    if kind == "error":
        raise value
    return value


def _child(module_name: str, job, path: Path, send, log: Path) -> None:
    with open(log, "wb") as out:  # the OS-level descriptors: C++ libraries write there, not to sys.stderr
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    try:
        details = importlib.import_module(module_name).export(job, path)
        send.send(("ok", details))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        try:
            send.send(("error", exc))
        except Exception:  # an exception that does not pickle: its text then
            send.send(("error", RuntimeError("".join(traceback.format_exception_only(exc)).strip())))
    finally:
        send.close()
