"""``crd-edge demo --web DIR``: a web export served on this machine with the headers a page needs
for WebAssembly threads (cross-origin isolation), so its demo page runs as a deployed one would.

Loopback only: a browser gives a page the camera and cross-origin isolation only in a secure
context, which plain HTTP is only on localhost. To show the page to other machines, copy the
folder to any web server with HTTPS that sends the same two headers (the guide names them)."""

from __future__ import annotations

import errno
from functools import partial
from pathlib import Path
from typing import Callable

from crd_edge.errors import UserError

DEFAULT_ADDRESS = "127.0.0.1:8000"


def web_folder(path: str | Path) -> Path:
    """A web artifact, or the one an export folder holds: fp32, LiteRT.js before onnxruntime-web
    (faster in every measurement so far), the largest size."""
    from crd_edge.artifacts import MANIFEST_NAME, find_artifacts
    path = Path(path)
    if not path.exists():
        raise UserError(f"--web {path}: no such folder")
    if (path / "index.html").is_file() and (path / "model.json").is_file():  # a web artifact itself
        return path
    found = ([a for a in find_artifacts(path) if a.format.file_format == "web"]
             if (path / MANIFEST_NAME).is_file() else [])
    if not found:
        raise UserError(f"--web {path}: no web export there; make one with "
                        f"`crd-edge export CHECKPOINT --target web`")
    return max(found, key=lambda a: (a.precision == "fp32", a.target == "web-litert",
                                     (a.input_hw or (0, 0))[0] * (a.input_hw or (0, 0))[1])).path


def serve_web(path: str | Path, address: str = DEFAULT_ADDRESS, log: Callable[[str], None] = print,
              on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the web export until Ctrl-C (or SIGTERM through the CLI)."""
    from crd_edge.demo.server import _BoundedServer, is_loopback, parse_address
    from crd_edge.runtime.browser_session import IsolatedFileHandler
    host, port = parse_address(address)
    if not is_loopback(host):
        raise UserError(f"--serve {address}: --web serves on this machine only (127.0.0.1): browsers give the "
                        f"camera and threads only to https:// pages or localhost; copy the web export to a web "
                        f"server with HTTPS to show it elsewhere")
    folder = web_folder(path)
    try:
        server = _BoundedServer((host, port), partial(IsolatedFileHandler, directory=str(folder)))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--serve {address}: port {port} is in use; pick another, e.g. --serve {host}:{port + 1}") from None
        raise UserError(f"--serve {address}: cannot listen there ({exc.strerror or exc})") from None
    url = f"http://{host}:{server.server_address[1]}/index.html"
    log(f"serving {folder} at {url} (cross-origin isolated: WebAssembly threads); Ctrl-C stops")
    if on_ready is not None:
        on_ready(url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
