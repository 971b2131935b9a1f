"""``crd-edge eval``: image-quality figures of a student, an exported artifact or a teacher.

Modules (each imported on demand; this package imports nothing heavy):

* :mod:`crd_edge.eval.images` - evaluation images (folder, CycleGAN ``testA``, built-in
  held-out photos), fitting them to a model's input, and the [-1, 1] <-> uint8 conversions
  (rounded, never truncated);
* :mod:`crd_edge.eval.inception` - finding and wrapping the Inception-v3 "2015-12-05" FID
  network (TorchScript), with the identity of the file used;
* :mod:`crd_edge.eval.fid` - Frechet distance and KID on features;
* :mod:`crd_edge.eval.cache` - on-disk ``.npz`` cache of reference features/statistics;
* :mod:`crd_edge.eval.fidelity` - PSNR, SSIM and the VGG-16 feature distance ``vgg_dist``;
* :mod:`crd_edge.eval.score` - :func:`~crd_edge.eval.score.evaluate`, the library call behind
  the command;
* :mod:`crd_edge.eval.result` - what it returns: an :class:`~crd_edge.eval.result.Evaluation`
  of :class:`~crd_edge.eval.result.Figure` s.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:  # lazy: `import crd_edge.eval` must stay cheap
    if name == "evaluate":
        from crd_edge.eval.score import evaluate
        return evaluate
    raise AttributeError(name)
