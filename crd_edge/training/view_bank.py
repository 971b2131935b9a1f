"""Teacher-labelled views: the teacher run on many random views of the photos, kept on disk.

The teacher is the cost of offline distillation on a CPU (the vintagify ResNet takes 160 ms per
128 px view in torch, 2 threads), so views are labelled

* with the teacher's fastest local runtime: a torch teacher on a CPU is converted in memory to
  OpenVINO and run in the CPU's 16-bit type where it has one (29 ms per 128 px view, bf16) or
  fp32 (56 ms), after checking it against torch on a few views (PSNR at least
  ``MIN_LABEL_PSNR``); anything else (CUDA, an ONNX teacher, OpenVINO missing or failing the
  check) keeps the teacher's own runtime;
* in a background thread, while the student already trains on the views labelled so far;
* into a bounded on-disk store (``capacity`` views rounded up to whole shards of ``SHARD``
  views, written atomically) keyed by everything that decides the labels, so a resumed run, another seed or
  an ablation reuses them instead of paying the teacher again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from crd_edge._io import atomic_write_with
from crd_edge.data.views import ViewSpec, sample_view
from crd_edge.imaging import psnr_tensor, tensor_from_uint8, tensor_to_uint8

__all__ = ["TeacherLabeller", "ViewBank", "MIN_LABEL_PSNR", "SHARD"]

log = logging.getLogger(__name__)

MIN_LABEL_PSNR = 40.0  # dB against the torch teacher: far below any student's error
SHARD = 64              # views per file (and per teacher batch)
FORMAT = 1


class TeacherLabeller:
    """``labeller(views)``: uint8 N x S x S x 3 views -> the teacher's uint8 outputs, on the
    fastest verified runtime (see the module docstring); :attr:`info` says which and why."""

    def __init__(self, teacher: Callable[[torch.Tensor], torch.Tensor], size: int,
                 device: torch.device, *, probe: np.ndarray | None = None, runtime: str = "auto") -> None:
        self.teacher, self.size, self.device = teacher, size, device
        self.passes, self.seconds = 0, 0.0
        self._run: Callable[[torch.Tensor], torch.Tensor] = self._run_teacher
        self.info: dict = {"runtime": "teacher's own (torch or onnxruntime)", "precision": "fp32"}
        module = getattr(teacher, "module", None)
        if runtime == "auto" and device.type == "cpu" and isinstance(module, torch.nn.Module) and probe is not None:
            self._try_openvino(module, probe)
        if probe is not None:  # before any view is labelled and stored
            with torch.no_grad():
                out = self._run(tensor_from_uint8(probe))
            _check_outputs(out, constant_too=len(probe) > 1)

    def _run_teacher(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.teacher(x[i:i + 8].to(self.device)).float().cpu() for i in range(0, len(x), 8)])

    def _try_openvino(self, module: torch.nn.Module, probe: np.ndarray) -> None:
        from crd_edge.runtime.openvino_session import torch_module_on_openvino
        x = tensor_from_uint8(probe[:4])
        try:
            version, candidates = torch_module_on_openvino(module, x, self.size)
        except ImportError:
            self.info["note"] = "OpenVINO not installed (pip install 'crd-edge[openvino]' labels 3-6x faster)"
            return
        except RuntimeError as exc:  # any conversion failure keeps the torch teacher
            self.info["note"] = f"OpenVINO conversion failed ({exc})"
            return
        with torch.no_grad():
            reference = self._run_teacher(x)
        for precision, hint, run in candidates:
            try:
                out = run(x)
            except Exception:  # noqa: BLE001 - it compiled but cannot run here: the next one
                continue
            quality = float(psnr_tensor(out, reference).mean())
            if quality >= MIN_LABEL_PSNR:
                self._run = run
                self.info = {"runtime": f"OpenVINO {version} (CPU)", "precision": precision, "hint": hint,
                             "psnr_vs_torch_db": round(quality, 1)}
                return
        self.info["note"] = "OpenVINO outputs differed from torch's; labelling with the torch teacher"

    def __call__(self, views: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        with torch.no_grad():
            out = self._run(tensor_from_uint8(views))
        _check_outputs(out)
        self.seconds += time.perf_counter() - start
        self.passes += len(views)
        return tensor_to_uint8(out)


def _check_outputs(out: torch.Tensor, constant_too: bool = False) -> None:
    """A teacher whose outputs are not numbers, or the same image for different views, would
    train a student to nonsense that still exits 0: refuse it in one line."""
    from crd_edge.errors import UserError
    if not torch.isfinite(out).all():
        raise UserError("the teacher's outputs contain NaN or infinite values; check the teacher file "
                        "(its weights, or the precision it was exported in)")
    if constant_too and float((out - out[:1]).abs().max()) < 1e-3:
        raise UserError("the teacher gives the same (constant) image for different views; check the teacher file")


def bank_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ViewBank:
    """Up to ``capacity`` labelled views of ``photos`` in ``folder``; see the module docstring.

    ``sample(n, rng)`` draws a batch from the views labelled so far (waiting for the first
    shard). Shard ``k`` always holds the same views (its generator is seeded by ``seed`` and
    ``k``), so a bank filled in several sessions equals one filled at once.
    """

    def __init__(self, folder: str | Path, photos: Sequence[np.ndarray], spec: ViewSpec,
                 labeller: Callable[[np.ndarray], np.ndarray], capacity: int, seed: int = 0) -> None:
        self.folder = Path(folder)
        self.photos, self.spec, self.labeller = photos, spec, labeller
        # Every shard is full, so shard k is the same whatever the capacity (a larger bank reuses
        # a smaller one's shards): the capacity is rounded up to a multiple of SHARD.
        self.n_shards = -(-capacity // SHARD)
        self.capacity, self.seed = self.n_shards * SHARD, seed
        self._x: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.loaded_from_disk = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        for k in range(self.n_shards):
            shard = self._load(k)
            if shard is None:
                break
            self._add(*shard)
            self.loaded_from_disk += len(shard[0])

    def _path(self, k: int) -> Path:
        return self.folder / f"views_{k:05d}.npz"

    def _load(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._path(k)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                x, y = data["x"], data["y"]
            if len(x) != SHARD or x.shape != y.shape:
                raise ValueError(f"{len(x)} views, expected {SHARD}")
            return x, y
        except (OSError, ValueError, KeyError, EOFError) as exc:  # a torn or foreign file: relabel it
            log.warning("view shard %s unreadable (%s); labelling it again", path, exc)
            return None

    def _add(self, x: np.ndarray, y: np.ndarray) -> None:
        with self._lock:
            self._x.append(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2))
            self._y.append(torch.from_numpy(np.ascontiguousarray(y)).permute(0, 3, 1, 2))
        self._ready.set()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(x) for x in self._x)

    @property
    def complete(self) -> bool:
        return len(self._x) >= self.n_shards

    def _draws(self, k: int) -> Iterator[tuple[int, np.ndarray]]:
        """Shard ``k``'s views, each with the index of the photo it was cut from."""
        rng = random.Random(f"views/{self.seed}/{k}")
        for _ in range(SHARD):
            index = rng.randrange(len(self.photos))
            yield index, sample_view(self.photos[index], rng, self.spec)

    def _views(self, k: int) -> np.ndarray:
        return np.stack([view for _, view in self._draws(k)])

    def photo_indices(self) -> list[int]:
        """The photo each view held now came from, in bank order (``first``'s): the views are
        drawn again (crops only, no teacher), since a shard stores none."""
        return [index for k in range(len(self._x)) for index, _ in self._draws(k)]

    def fill_shard(self) -> bool:
        """Label the next missing shard and store it; False when the bank is full."""
        k = len(self._x)
        if k >= self.n_shards:
            return False
        x = self._views(k)
        y = self.labeller(x)
        atomic_write_with(self._path(k), lambda fh: np.savez(fh, x=x, y=y))
        self._add(x, y)
        return True

    def _work(self) -> None:
        try:
            while not self._stop.is_set() and self.fill_shard():
                pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the training thread by sample()
            self.error = exc
            self._ready.set()

    def start(self) -> "ViewBank":
        """Label the missing shards in a background thread (no-op when the bank is full)."""
        if not self.complete and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="view-labeller", daemon=True)
            self._thread.start()
        return self

    def fill(self) -> "ViewBank":
        """Label every missing shard now, in this thread."""
        while self.fill_shard():
            pass
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def sample(self, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random labelled views: inputs and teacher outputs, float N x 3 x S x S in [-1, 1]."""
        self._ready.wait()
        if self.error is not None:
            raise self.error
        with self._lock:
            xs, ys = list(self._x), list(self._y)
        sizes = torch.tensor([len(x) for x in xs])
        flat = torch.randint(0, int(sizes.sum()), (n,), generator=rng)
        ends = sizes.cumsum(0)
        shard = torch.searchsorted(ends, flat, right=True)
        offset = flat - (ends - sizes)[shard]
        x = torch.stack([xs[s][o] for s, o in zip(shard.tolist(), offset.tolist())])
        y = torch.stack([ys[s][o] for s, o in zip(shard.tolist(), offset.tolist())])
        return x.float() / 127.5 - 1, y.float() / 127.5 - 1

    def first(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` labelled views (a fixed set: the bank's order never changes)."""
        with self._lock:
            x, y = torch.cat(self._x)[:n], torch.cat(self._y)[:n]
        return x.float() / 127.5 - 1, y.float() / 127.5 - 1

    def stats(self) -> dict:
        return {"views": len(self), "capacity": self.capacity, "loaded_from_disk": self.loaded_from_disk,
                "folder": str(self.folder)}
